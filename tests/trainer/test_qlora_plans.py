"""QLoRA under every execution plan: the same trainable LoRA, and gradients through the frozen
base that match bitsandbytes' own packed-NF4 path, on the tiny random model and on the real one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapters.execution_plan import ALL_PLANS, ExecutionPlan
from adapters.hyperparameters import parse
from adapters.nf4_forms import NF4DenseLinear, is_packed_nf4
from trainer.objective import row_loss
from trainer.packing import pack
from trainer.qlora import prepare_model
from trainer.tokenize import encode

HP = parse({"lora_rank": 8})
MESSAGES = [
    {"role": "system", "content": "You answer for Lumen Lane, a bicycle shop."},
    {"role": "user", "content": "When are you open?"},
    {"role": "assistant", "content": "Monday to Friday from 9 to 17, and on Saturdays from 10 to 14."},
]
REFERENCE = "nf4-fp32"
"""bitsandbytes' own packed-NF4 path in fp32: what every other plan's gradients are held to."""
GRADIENT_RTOL = {"float32": 0.02, "bfloat16": 0.1}
"""Largest ``|g - g_ref| / |g_ref|`` of the LoRA gradients against bitsandbytes' packed NF4 path in
fp32. fp32 plans differ only where bitsandbytes' backward rounds the dequantized weights to bf16
(measured 0.6 % on the embedded model); bf16 plans add bf16 activations (measured 4 %)."""


def loss_and_gradients(model_dir: Path, name: str) -> tuple[float, torch.Tensor]:
    torch.manual_seed(0)  # the same LoRA initialisation for every plan
    prepared = prepare_model(model_dir, HP, device="cpu", plan=ExecutionPlan.from_name(name))
    assert prepared.plan.name == name
    row = pack([encode(prepared.tokenizer, MESSAGES)] * 2, 128, seed=0)[0]  # two samples in one row: 114 tokens
    prepared.model.train()
    loss = row_loss(prepared, row)
    loss.backward()
    grads = [
        p.grad.float().flatten() for n, p in prepared.model.named_parameters() if p.requires_grad and "lora_B" in n
    ]
    return float(loss), torch.cat(grads)


@pytest.mark.parametrize("name", ["dense-fp32", "dense-bf16"])
def test_a_dense_base_is_frozen_and_only_the_lora_trains(tiny_model_dir: Path, name: str) -> None:
    prepared = prepare_model(tiny_model_dir, HP, device="cpu", plan=ExecutionPlan.from_name(name))
    model = prepared.model
    assert not any(is_packed_nf4(m) for m in model.modules())
    dense = [m for m in model.modules() if isinstance(m, NF4DenseLinear)]
    assert len(dense) == 2 * 7 and all(m.weight.dtype == prepared.plan.dtype for m in dense)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "norm" in n or p.requires_grad)


@pytest.mark.parametrize("model", ["tiny", "embedded"])
def test_gradients_through_the_frozen_base_match_bitsandbytes(model: str, request: pytest.FixtureRequest) -> None:
    model_dir = request.getfixturevalue(f"{model}_model_dir")
    ref_loss, reference = loss_and_gradients(model_dir, REFERENCE)
    assert reference.norm() > 0
    for name in (plan for plan in ALL_PLANS if plan != REFERENCE):  # the reference itself: a model load saved
        loss, gradients = loss_and_gradients(model_dir, name)
        dtype = ExecutionPlan.from_name(name).compute_dtype
        relative = float((gradients - reference).norm() / reference.norm())
        assert relative <= GRADIENT_RTOL[dtype], (name, relative)
        assert loss == pytest.approx(ref_loss, rel=1e-3 if dtype == "float32" else 2e-2), name
