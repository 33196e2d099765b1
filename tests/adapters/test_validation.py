"""validate_adapter on real PEFT adapters saved from a tiny Llama, and on hand-broken ones.

The adapters come from :func:`tests.adapters.helpers.save_peft_adapter`, which the route tests
use too, so both exercise the exact files ``peft`` writes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from adapters.base_model import linear_shapes
from adapters.validation import AdapterValidationError, validate_adapter
from tests.adapters.helpers import ALL_SHORT_NAMES, TINY_LINEAR_SHAPES, save_peft_adapter, tiny_llama
from tests.conftest import python_bytes_growth


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_peft_adapter(tmp_path_factory.mktemp("adapter"))


def config_bytes(adapter_dir: Path, **changes: Any) -> bytes:
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    config.update(changes)
    return json.dumps(config).encode()


def validate(config: bytes, weights: Path, max_rank: int = 64):
    return validate_adapter(config, weights, TINY_LINEAR_SHAPES, max_rank)


def test_hand_written_shapes_match_the_real_model() -> None:
    assert linear_shapes(tiny_llama()) == TINY_LINEAR_SHAPES


def test_accepts_peft_all_linear(adapter_dir: Path) -> None:
    result = validate(config_bytes(adapter_dir), adapter_dir / "adapter_model.safetensors")
    assert (result.rank, result.alpha, result.use_rslora) == (4, 8.0, False)
    assert result.target_modules == ALL_SHORT_NAMES
    assert result.modules == tuple(sorted(TINY_LINEAR_SHAPES))
    assert result.config["target_modules"] == sorted(TINY_LINEAR_SHAPES)
    assert result.config["peft_type"] == "LORA" and result.config["inference_mode"] is True
    assert result.scaling == 2.0


def test_accepts_explicit_list_and_rslora(tmp_path: Path) -> None:
    directory = save_peft_adapter(tmp_path, r=2, target_modules=["q_proj", "v_proj"], use_rslora=True, lora_alpha=4)
    result = validate((directory / "adapter_config.json").read_bytes(), directory / "adapter_model.safetensors")
    assert result.target_modules == ("q_proj", "v_proj")
    assert len(result.modules) == 4
    assert result.scaling == pytest.approx(4 / math.sqrt(2))


@pytest.mark.timeout(60)
def test_a_tenants_regular_expression_is_never_evaluated(adapter_dir: Path) -> None:
    """A regex in the uploaded config is the tenant's code: ``(.|.)*Z`` held the GIL for seconds and
    ``((.|.)|(.|.))*Z`` never ended. The weights say which modules are adapted; the stored config
    names them explicitly, whatever pattern the upload carried."""
    weights = adapter_dir / "adapter_model.safetensors"
    for pattern in ("((.|.)|(.|.))*Z", "(.|.)*Z", r".*\.q_proj", "(("):
        for field in ("target_modules", "exclude_modules"):
            result = validate(config_bytes(adapter_dir, **{field: pattern}), weights)
            assert result.config["target_modules"] == sorted(TINY_LINEAR_SHAPES)
            assert "exclude_modules" not in result.config or result.config["exclude_modules"] is None


def test_listed_target_modules_are_checked_against_weights(adapter_dir: Path) -> None:
    weights = adapter_dir / "adapter_model.safetensors"
    with pytest.raises(AdapterValidationError, match="does not select"):
        validate(config_bytes(adapter_dir, target_modules=["q_proj"]), weights)
    with pytest.raises(AdapterValidationError, match="exclude_modules"):
        validate(config_bytes(adapter_dir, exclude_modules=["down_proj"]), weights)


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"peft_type": "IA3"}, "peft_type"),
        ({"r": 65}, "r"),
        ({"r": 0}, "r"),
        ({"r": True}, "r"),
        ({"r": 4.0}, "r"),
        ({"lora_alpha": 0}, "lora_alpha"),
        ({"lora_alpha": "8"}, "lora_alpha"),
        ({"use_dora": True}, "use_dora"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"bias": "all"}, "bias"),
        ({"bias": "lora_only"}, "bias"),
        ({"layers_to_transform": [0]}, "layers_to_transform"),
        ({"rank_pattern": {"q_proj": 8}}, "rank_pattern"),
        ({"alpha_pattern": {"q_proj": 8}}, "alpha_pattern"),
        ({"lora_bias": True}, "lora_bias"),
        ({"use_rslora": "yes"}, "use_rslora"),
        ({"fan_in_fan_out": True}, "fan_in_fan_out"),
        ({"some_future_option": {"on": True}}, "some_future_option"),
        ({"init_lora_weights": "pissa"}, "init_lora_weights"),
        ({"init_lora_weights": "olora"}, "init_lora_weights"),
        ({"init_lora_weights": "loftq"}, "init_lora_weights"),
    ],
)
def test_refuses_config(adapter_dir: Path, changes: dict[str, Any], param: str) -> None:
    with pytest.raises(AdapterValidationError) as info:
        validate(config_bytes(adapter_dir, **changes), adapter_dir / "adapter_model.safetensors")
    assert info.value.param == param
    assert info.value.message


def test_unknown_option_left_unset_is_fine(adapter_dir: Path) -> None:
    validate(config_bytes(adapter_dir, some_future_option=None), adapter_dir / "adapter_model.safetensors")


@pytest.mark.parametrize("raw", [b"[1, 2]", b"{not json", b"\xff\xfe", b'"LORA"'])
def test_refuses_non_object_config(adapter_dir: Path, raw: bytes) -> None:
    with pytest.raises(AdapterValidationError, match="adapter_config.json"):
        validate(raw, adapter_dir / "adapter_model.safetensors")


def test_refuses_pickle_and_garbage(adapter_dir: Path, tmp_path: Path) -> None:
    pickled = tmp_path / "adapter_model.safetensors"
    torch.save(load_file(adapter_dir / "adapter_model.safetensors"), pickled)
    with pytest.raises(AdapterValidationError, match="not a safetensors file"):
        validate(config_bytes(adapter_dir), pickled)
    pickled.write_bytes(b"\x00" * 7 + b"garbage" * 100)
    with pytest.raises(AdapterValidationError, match="not a safetensors file"):
        validate(config_bytes(adapter_dir), pickled)
    pickled.write_bytes(b"")
    with pytest.raises(AdapterValidationError, match="not a safetensors file"):
        validate(config_bytes(adapter_dir), pickled)


def test_refuses_adapter_for_another_architecture(tmp_path: Path) -> None:
    directory = save_peft_adapter(tmp_path, hidden_size=128)
    with pytest.raises(AdapterValidationError, match="another model"):
        validate((directory / "adapter_config.json").read_bytes(), directory / "adapter_model.safetensors")


def test_refuses_rank_mismatch_between_config_and_weights(adapter_dir: Path) -> None:
    with pytest.raises(AdapterValidationError, match="shape"):
        validate(config_bytes(adapter_dir, r=8), adapter_dir / "adapter_model.safetensors")


def test_rank_limit_is_the_callers(adapter_dir: Path) -> None:
    with pytest.raises(AdapterValidationError, match="from 1 to 2") as info:
        validate(config_bytes(adapter_dir), adapter_dir / "adapter_model.safetensors", max_rank=2)
    assert info.value.param == "r"


def test_refuses_peft_output_that_saves_base_layers(tmp_path: Path) -> None:
    # Targeting lm_head makes PEFT save the full head weights too; those are never accepted.
    directory = save_peft_adapter(tmp_path, target_modules=["q_proj", "lm_head"])
    with pytest.raises(AdapterValidationError, match="Unexpected tensor 'base_model.model.lm_head.base_layer"):
        validate((directory / "adapter_config.json").read_bytes(), directory / "adapter_model.safetensors")


def test_refuses_dora_weights_even_if_config_hides_it(tmp_path: Path) -> None:
    directory = save_peft_adapter(tmp_path, use_dora=True)
    with pytest.raises(AdapterValidationError, match="Unexpected tensor"):
        validate(config_bytes(directory, use_dora=False), directory / "adapter_model.safetensors")


def _rewrite(adapter_dir: Path, target: Path, edit: Any) -> Path:
    tensors = load_file(adapter_dir / "adapter_model.safetensors")
    edit(tensors)
    save_file(tensors, target)
    return target


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.pop("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"), "no lora_B"),
        (lambda t: t.pop("base_model.model.model.layers.1.mlp.up_proj.lora_A.weight"), "no lora_A"),
        (
            lambda t: t.update(
                {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight": torch.zeros(4, 64)}
            ),
            "Unexpected tensor",
        ),
        (
            lambda t: t.update({"base_model.model.model.embed_tokens.lora_embedding_A": torch.zeros(4, 128)}),
            "Unexpected tensor",
        ),
        (
            lambda t: t.update(
                {
                    "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(
                        4, 64, dtype=torch.int32
                    )
                }
            ),
            "dtype",
        ),
        (
            lambda t: t.update({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(64, 4)}),
            "shape",
        ),
        (
            lambda t: t["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"].__setitem__((0, 0), math.nan),
            "NaN",
        ),
        (lambda t: t.update({"base_model.model.lm_head.lora_A.weight": torch.zeros(4, 64)}), "not a linear layer"),
        (lambda t: t.clear(), "no LoRA tensors"),
        (
            lambda t: t.update(
                {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight\n": torch.zeros(4, 64)}
            ),
            "Unexpected tensor",
        ),  # a trailing newline once passed and made every chat with the adapter a 500
    ],
)
def test_refuses_broken_weights(adapter_dir: Path, tmp_path: Path, edit: Any, message: str) -> None:
    weights = _rewrite(adapter_dir, tmp_path / "adapter_model.safetensors", edit)
    with pytest.raises(AdapterValidationError, match=message) as info:
        validate(config_bytes(adapter_dir), weights)
    assert info.value.param == "adapter_model.safetensors"


def test_accepts_half_precision_weights(adapter_dir: Path, tmp_path: Path) -> None:
    def to_bf16(tensors: dict[str, torch.Tensor]) -> None:
        tensors.update({k: v.to(torch.bfloat16) for k, v in tensors.items()})

    weights = _rewrite(adapter_dir, tmp_path / "adapter_model.safetensors", to_bf16)
    assert validate(config_bytes(adapter_dir), weights).rank == 4


def test_refuses_weights_for_layers_the_base_lacks(adapter_dir: Path) -> None:
    one_layer = {"model.layers.0.self_attn.q_proj": (64, 64)}
    with pytest.raises(AdapterValidationError, match="not a linear layer of the base"):
        validate_adapter(config_bytes(adapter_dir), adapter_dir / "adapter_model.safetensors", one_layer, 64)


def test_validating_again_and_again_holds_no_memory(adapter_dir: Path) -> None:
    config = config_bytes(adapter_dir)
    weights = adapter_dir / "adapter_model.safetensors"
    growth = python_bytes_growth(lambda: validate(config, weights), 400)
    assert growth < 200_000, f"{growth} bytes held after 400 validations"  # the mmap reader: ~600 KB
