"""Hyperparameters: defaults, validation errors naming the key, the ``auto`` rules, no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adapters.hyperparameters import AUTO, MAX_RANK, HyperparameterError, Hyperparameters, normalise, parse

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_filled_in_and_json_ready() -> None:
    values = normalise({})
    assert values == normalise(None) == Hyperparameters().to_dict()
    assert values["n_epochs"] == AUTO and values["target_modules"] == "all-linear" and values["lora_rank"] == 16
    assert normalise({"target_modules": ["q_proj", "v_proj"], "n_epochs": 3.0})["target_modules"] == [
        "q_proj",
        "v_proj",
    ]
    assert parse({"n_epochs": 3.0}).n_epochs == 3  # JSON clients may send 3.0


@pytest.mark.parametrize(
    ("raw", "param", "fragment"),
    [
        ({"epochs": 3}, "epochs", "Unknown hyperparameter"),
        ({"n_epochs": 0}, "n_epochs", "between"),
        ({"n_epochs": 2.5}, "n_epochs", "integer"),
        ({"n_epochs": True}, "n_epochs", "integer"),
        ({"n_epochs": "3"}, "n_epochs", "integer"),
        ({"batch_size": -1}, "batch_size", "between"),
        ({"learning_rate_multiplier": float("nan")}, "learning_rate_multiplier", "number"),
        ({"learning_rate": 0}, "learning_rate", "between"),
        ({"lora_rank": MAX_RANK + 1}, "lora_rank", "between"),
        ({"lora_rank": "auto"}, "lora_rank", "integer"),
        ({"lora_dropout": 0.9}, "lora_dropout", "between"),
        ({"target_modules": []}, "target_modules", "all-linear"),
        ({"target_modules": ["q_proj; rm -rf"]}, "target_modules", "module names"),
        ({"max_seq_tokens": 10}, "max_seq_tokens", "between"),
        ({"gradient_checkpointing": 1}, "gradient_checkpointing", "true/false"),
        ({"max_steps": 0}, "max_steps", "between"),
    ],
)
def test_bad_values_name_the_key(raw: dict, param: str, fragment: str) -> None:
    with pytest.raises(HyperparameterError) as caught:
        parse(raw)
    assert caught.value.param == param
    assert fragment in caught.value.message


def test_not_an_object() -> None:
    with pytest.raises(HyperparameterError, match="JSON object"):
        parse([1, 2])  # type: ignore[arg-type]


def test_auto_rules() -> None:
    hp = parse({})
    small = hp.resolve(n_samples=240, rows=60, hidden_size=576, device_type="cpu")
    assert (
        small.n_epochs == 5 and small.total_steps == 75 and small.gradient_accumulation_steps == 4
    )  # 4 rows of 256 tokens
    assert small.learning_rate == pytest.approx(2e-4 * 4096 / 576)
    assert small.lora_alpha == 32 and small.max_seconds == 480 and small.gradient_checkpointing is False
    big = hp.resolve(n_samples=20000, rows=400, hidden_size=4096, device_type="cuda")
    assert big.learning_rate == pytest.approx(2e-4) and big.n_epochs == 3
    assert big.gradient_checkpointing is True and big.max_seconds > small.max_seconds
    assert hp.resolve(n_samples=10, rows=1, hidden_size=64, device_type="cpu").n_epochs == 30
    assert hp.resolve(n_samples=10, rows=1, hidden_size=64, device_type="cpu").learning_rate == 2e-3


def test_overrides_win_over_auto() -> None:
    hp = parse(
        {
            "n_epochs": 2,
            "learning_rate": 1e-4,
            "learning_rate_multiplier": 3,
            "lora_alpha": 8,
            "max_seconds": 60,
            "gradient_checkpointing": True,
            "max_steps": 5,
        }
    )
    resolved = hp.resolve(n_samples=100, rows=10, hidden_size=576, device_type="cpu")
    assert resolved.n_epochs == 2 and resolved.learning_rate == pytest.approx(3e-4)
    assert resolved.lora_alpha == 8 and resolved.max_seconds == 60 and resolved.gradient_checkpointing
    assert resolved.total_steps == 5


def test_batch_size_sets_accumulation_in_packed_rows() -> None:
    # 100 samples in 10 rows: 10 samples a row, so 40 samples a step is 4 rows a step.
    resolved = parse({"batch_size": 40}).resolve(n_samples=100, rows=10, hidden_size=576, device_type="cpu")
    assert resolved.gradient_accumulation_steps == 4
    assert resolved.total_steps == resolved.n_epochs * 3
    explicit = parse({"batch_size": 40, "gradient_accumulation_steps": 2})
    assert explicit.resolve(n_samples=100, rows=10, hidden_size=576, device_type="cpu").gradient_accumulation_steps == 2


def test_module_does_not_import_torch() -> None:
    code = "import sys, adapters.hyperparameters as h; h.normalise({}); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_operators_ceiling_holds_every_budget_auto_included() -> None:
    assert parse({}).within(60, "cpu").budget_seconds("cpu") == 60  # auto: 480 s on the CPU
    assert parse({}).within(3600, "cuda").budget_seconds("cuda") == 3600  # auto: 4 h on a GPU
    assert parse({"max_seconds": 30}).within(60, "cpu").budget_seconds("cpu") == 30  # already below
    assert parse({}).within(None, "cpu") == parse({})
