"""Packing: budget, every sample once, restarting positions — and attention kept per sample.

The last test is the one that matters: transformers builds a block-diagonal causal mask from
restarting ``position_ids`` when no attention mask is given and ``use_cache=False``, so a packed
row's logits and loss equal the samples' computed one by one (sdpa and eager); with plain 0..T-1
positions, or with the default cache on, they do not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.packing import pack
from trainer.tokenize import IGNORE_INDEX, EncodedSample


def sample(length: int, start: int = 1, answer_from: int = 1) -> EncodedSample:
    ids = list(range(start, start + length))
    return EncodedSample(ids, [IGNORE_INDEX] * answer_from + ids[answer_from:])


def test_rows_respect_the_budget_and_hold_every_sample_once() -> None:
    samples = [sample(n, start=100 * i) for i, n in enumerate([50, 30, 70, 20, 90, 10, 40, 60])]
    rows = pack(samples, token_budget=100, seed=0)
    assert all(r.tokens <= 100 for r in rows)
    assert len(rows) == 4  # 370 tokens; first-fit decreasing needs no more than 4 rows of 100
    assert sum(r.samples for r in rows) == len(samples)
    packed = sorted(tuple(r.input_ids[0].tolist()) for r in rows)
    assert sorted(packed) == packed and sum(len(p) for p in packed) == 370
    for row in rows:
        assert row.input_ids.shape == row.labels.shape == row.position_ids.shape == (1, row.tokens)
        assert row.input_ids.dtype == torch.long


def test_positions_restart_and_no_label_crosses_a_sample_boundary() -> None:
    rows = pack([sample(5, 10, answer_from=0), sample(3, 20, answer_from=0)], token_budget=16, seed=0)
    (row,) = rows
    assert row.position_ids[0].tolist() in ([0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 0, 1, 2, 3, 4])
    starts = (row.position_ids[0] == 0).nonzero().flatten().tolist()
    assert all(row.labels[0, s] == IGNORE_INDEX for s in starts)
    assert row.trained_tokens == 8 - 2


def test_long_samples_are_cut_and_order_is_seeded() -> None:
    rows = pack([sample(300)], token_budget=128, seed=0)
    assert [r.tokens for r in rows] == [128]
    samples = [sample(n, start=100 * n) for n in (10, 20, 30, 40, 50, 60)]
    first = [r.input_ids.tolist() for r in pack(samples, 60, seed=1)]
    assert first == [r.input_ids.tolist() for r in pack(samples, 60, seed=1)]
    assert any(first != [r.input_ids.tolist() for r in pack(samples, 60, seed=s)] for s in range(2, 6))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_loss_equals_per_sample_loss(tiny_model_dir: Path, attention: str) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attention)
    model.eval()
    generator = torch.Generator().manual_seed(0)
    samples = []
    for length in (23, 41, 17, 35):
        ids = torch.randint(0, 1000, (length,), generator=generator).tolist()
        samples.append(EncodedSample(ids, [IGNORE_INDEX] * 5 + ids[5:]))
    (row,) = pack(samples, token_budget=256, seed=0)

    def logits(input_ids, position_ids=None, use_cache=False) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=input_ids, position_ids=position_ids, use_cache=use_cache).logits[0]

    def loss_sum(input_ids, labels, position_ids=None) -> float:
        with torch.no_grad():
            out = model(input_ids=input_ids, labels=labels, position_ids=position_ids, use_cache=False)
        return float(out.loss) * int((labels[:, 1:] != IGNORE_INDEX).sum())

    separate = sum(loss_sum(torch.tensor([s.input_ids]), torch.tensor([s.labels])) for s in samples)
    assert loss_sum(row.input_ids, row.labels, row.position_ids) == pytest.approx(separate, rel=1e-4)
    # Token by token: each sample's logits in the row equal its logits alone ...
    by_start = {tuple(s.input_ids[:3]): s for s in samples}
    packed, leaky = logits(row.input_ids, row.position_ids), logits(row.input_ids, torch.arange(row.tokens)[None])
    cached = logits(row.input_ids, row.position_ids, use_cache=True)
    starts = (row.position_ids[0] == 0).nonzero().flatten().tolist() + [row.tokens]
    for begin, end in zip(starts, starts[1:], strict=False):
        alone = logits(torch.tensor([by_start[tuple(row.input_ids[0, begin : begin + 3].tolist())].input_ids]))
        assert torch.allclose(packed[begin:end], alone, atol=1e-4)
        if begin > 0:  # ... and without restarting positions, later samples see earlier ones
            assert not torch.allclose(leaky[begin:end], alone, atol=1e-4)
            assert not torch.allclose(cached[begin:end], alone, atol=1e-4)
