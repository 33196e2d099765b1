"""The training method: OpenAI's ``method`` object read with its hyperparameters, the compact form
the store and the spec keep, and OpenAI's shape shown back."""

from __future__ import annotations

import pytest

from adapters.hyperparameters import normalise
from adapters.training_method import DEFAULT_BETA, DEFAULT_SFT_WEIGHT, MethodError, TrainingMethod, parse_method


def test_no_method_is_supervised_with_the_top_level_hyperparameters() -> None:
    method, usual, where = parse_method(None, {"n_epochs": 2})
    assert (method, usual, where) == (TrainingMethod(), normalise({"n_epochs": 2}), "hyperparameters")
    assert method.to_dict() == {"type": "supervised"}
    assert method.openai_object(usual) == {"type": "supervised", "supervised": {"hyperparameters": usual}}


def test_dpo_takes_beta_and_sft_weight_beside_the_usual_hyperparameters() -> None:
    raw = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.5, "sft_weight": 0, "lora_rank": 8}}}
    method, usual, where = parse_method(raw, None)
    assert (method.type, method.beta, method.sft_weight, where) == ("dpo", 0.5, 0.0, "method.dpo.hyperparameters")
    assert usual == normalise({"lora_rank": 8})
    assert method.openai_object(usual)["dpo"]["hyperparameters"] == {**usual, "beta": 0.5, "sft_weight": 0.0}
    defaults, _, _ = parse_method({"type": "dpo", "dpo": {"hyperparameters": {"beta": "auto"}}}, {})
    assert (defaults.beta, defaults.sft_weight) == (DEFAULT_BETA, DEFAULT_SFT_WEIGHT)
    top_level, _, where = parse_method({"type": "dpo"}, {"beta": 2, "n_epochs": 1})
    assert (top_level.beta, where) == (2.0, "hyperparameters")


def test_the_compact_form_round_trips() -> None:
    method = TrainingMethod("dpo", 0.25, 1.0)
    assert TrainingMethod.from_dict(method.to_dict()) == method
    assert TrainingMethod.from_dict(None) == TrainingMethod.from_dict({"type": "supervised"}) == TrainingMethod()
    assert TrainingMethod.from_dict({"type": "dpo"}) == TrainingMethod("dpo", DEFAULT_BETA, DEFAULT_SFT_WEIGHT)
    for bad in ([], {"type": "rlhf"}, {"type": "supervised", "beta": 1}, {"type": "dpo", "beta": -1}):
        with pytest.raises(MethodError):
            TrainingMethod.from_dict(bad)


@pytest.mark.parametrize(
    ("method", "hyperparameters", "param", "fragment"),
    [
        ([], None, "method", "'method' must be an object"),
        ({"type": None}, None, "method.type", "'supervised' or 'dpo'"),
        ({"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}, None, "method.dpo.hyperparameters.beta", "above 0"),
        (
            {"type": "dpo", "dpo": {"hyperparameters": {"sft_weight": 11}}},
            None,
            "method.dpo.hyperparameters.sft_weight",
            "from 0 to 10",
        ),
        (
            {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 0}}},
            None,
            "method.dpo.hyperparameters.n_epochs",
            "method.dpo.hyperparameters.n_epochs must be between",
        ),
        ({"type": "dpo", "dpo": {"hyperparameters": {"epochs": 3}}}, None, "method.dpo.hyperparameters.epochs", "beta"),
        ({"type": "supervised", "supervised": {"hyperparameters": {}}}, {"n_epochs": 1}, "hyperparameters", "not both"),
        (None, [1], "hyperparameters", "must be an object"),
    ],
)
def test_bad_input_names_the_request_path(method: object, hyperparameters: object, param: str, fragment: str) -> None:
    with pytest.raises(MethodError) as caught:
        parse_method(method, hyperparameters)
    assert caught.value.param == param and fragment in caught.value.message, caught.value.message
