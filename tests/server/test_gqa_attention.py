"""The engine's attention against transformers' ``sdpa`` on a real (tiny, random) grouped-query
Llama: the same logits (bf16) from scratch, continuing a cache (the grouped path, taken) and decoding
a left-padded batch."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache, LlamaForCausalLM

from server.engine import gqa_attention
from tests.conftest import tiny_llama_config


@pytest.fixture(scope="module")
def models() -> tuple[LlamaForCausalLM, LlamaForCausalLM]:
    config = tiny_llama_config(num_attention_heads=6, hidden_size=96, attn_implementation="sdpa")
    torch.manual_seed(0)
    reference = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    ours = copy.deepcopy(reference)
    gqa_attention.use(ours)
    assert ours.config._attn_implementation == gqa_attention.NAME
    return reference, ours


@torch.inference_mode()
def run(
    model: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor, cache: DynamicCache, start: int
) -> torch.Tensor:
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, start:]
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
    logits: torch.Tensor = out.logits.float()
    return logits


def both(models, ids: torch.Tensor, mask: torch.Tensor, caches: list[DynamicCache], start: int) -> list[torch.Tensor]:
    return [run(model, ids, mask, cache, start) for model, cache in zip(models, caches, strict=True)]


def test_same_logits_as_sdpa_from_scratch_continuing_and_decoding(models, monkeypatch) -> None:
    grouped: list[bool] = []  # per call of torch's SDPA: with grouped heads and a mask
    sdpa = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        grouped.append(kwargs.get("enable_gqa", False) and kwargs.get("attn_mask") is not None)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(gqa_attention.F, "scaled_dot_product_attention", counting)
    ids = torch.randint(3, 256, (2, 40), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # the second row is left-padded, as the engine's batch pads
    caches = [DynamicCache(), DynamicCache()]

    expected, got = both(models, ids[:, :30], mask[:, :30], caches, 0)  # from scratch
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    expected = run(models[0], ids[:, 30:38], mask[:, :38], caches[0], 30)  # continuing: 8 queries, a mask
    grouped.clear()
    got = run(models[1], ids[:, 30:38], mask[:, :38], caches[1], 30)
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=0)  # bitwise here; the kernel may block differently
    assert grouped == [True, True]  # the grouped path ran, in both layers
    for step in (38, 39):  # decode steps: transformers' own packing
        expected, got = both(models, ids[:, step : step + 1], mask[:, : step + 1], caches, step)
        torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert (got.argmax(-1) == expected.argmax(-1)).all()
