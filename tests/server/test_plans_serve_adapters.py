"""An adapter serves the same under every execution plan, on the real embedded model: the engine's
batched LoRA over the base in each plan gives the logits of the fp32 reference within the
documented tolerance (exactly, for the fp32 plans) and, greedily, the same answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapters.base_model import load_base, load_tokenizer
from adapters.execution_plan import ALL_PLANS, ExecutionPlan
from server.engine.lora_batch import inject
from server.engine.lora_stack import load_lora
from tests.conftest import make_lora

CPU = torch.device("cpu")
BF16_LOGIT_DRIFT = 0.1
"""Largest mean logit difference of a bf16 plan from the fp32 reference, relative to the mean
logit size, on a chat prompt with a strong random adapter (measured 0.05: bf16 activations
through 30 layers; the largest single logit moved by 3.5 where logits reach about 40)."""
TOP1_AGREEMENT = 0.85
"""Share of prompt positions whose most likely next token a bf16 plan keeps (measured 0.90-0.92;
mid-prompt predictions are often near ties, where bf16 rounding flips them)."""


@pytest.fixture(scope="module")
def adapter(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora(embedded_model_dir, tmp_path_factory.mktemp("plan-lora") / "r8", rank=8, seed=3)


def adapted_logits(model_dir: Path, adapter: Path, plan: ExecutionPlan, ids: torch.Tensor) -> torch.Tensor:
    base = load_base(model_dir, "cpu", plan=plan)
    batch = inject(base.model, base.linear_shapes)
    batch.set_adapters(["a", None], {"a": load_lora(adapter, torch.float32, CPU)}, CPU)
    with torch.inference_mode():
        logits = base.model(input_ids=ids.expand(2, -1)).logits.float()
    assert not torch.equal(logits[0], logits[1])  # the adapter changes the answer
    return logits[0]


def test_an_adapter_serves_alike_under_every_plan(embedded_model_dir: Path, adapter: Path) -> None:
    tokenizer = load_tokenizer(embedded_model_dir)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "When does the bike shop open on Saturdays, and can I book a repair?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    ids = torch.tensor([tokenizer(text, add_special_tokens=False).input_ids])
    reference = adapted_logits(embedded_model_dir, adapter, ExecutionPlan.from_name("nf4-fp32"), ids)
    for name in ALL_PLANS:
        logits = adapted_logits(embedded_model_dir, adapter, ExecutionPlan.from_name(name), ids)
        agreement = float((logits.argmax(-1) == reference.argmax(-1)).float().mean())
        if name.endswith("fp32"):
            assert float((logits - reference).abs().max()) < 1e-3, name
        else:
            drift = float((logits - reference).abs().mean() / reference.abs().mean())
            assert drift <= BF16_LOGIT_DRIFT and agreement >= TOP1_AGREEMENT, (name, drift, agreement)
        assert logits[-1].argmax() == reference[-1].argmax(), name  # the first answer token
