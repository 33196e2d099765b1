"""Packing: budget, every sample once, shared prompts held once — and attention kept per sample.

The tests that matter compare with a real model. Without a shared prefix, transformers builds a
block-diagonal causal mask from restarting ``position_ids`` when no attention mask is given and
``use_cache=False``, so a packed row's logits and loss equal the samples' computed one by one
(sdpa and eager); with plain 0..T-1 positions, or with the default cache on, they do not. With a
shared prefix, the row's own mask gives every suffix the same logits as its sample alone.
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


# --------------------------------------------------------------------------------- shared prefix

PROMPT = list(range(500, 520))
"""A 20-token shared prompt (a system turn)."""


def chat(tail: list[int], answer: list[int], prompt: list[int] = PROMPT) -> EncodedSample:
    """``prompt + tail`` (unlabelled) then ``answer`` (labelled)."""
    ids = prompt + tail + answer
    return EncodedSample(ids, [IGNORE_INDEX] * (len(prompt) + len(tail)) + answer)


def test_samples_sharing_a_prompt_hold_it_once_per_row() -> None:
    samples = [chat([30 + i, 31], [40 + i, 41, 42]) for i in range(6)]
    (row,) = pack(samples, token_budget=64, seed=0)
    assert row.tokens == 20 + 6 * 5  # the questions differ from their first token
    assert row.samples == 6 and row.sample_tokens == 6 * 25
    assert row.input_ids[0, :20].tolist() == PROMPT
    assert row.trained_tokens == sum(s.trained_tokens for s in samples)
    segments = row.segments.tolist()
    assert segments[:20] == [0] * 20 and sorted(set(segments[20:])) == [1, 2, 3, 4, 5, 6]
    # Positions continue after the prompt in every suffix, as in the sample alone.
    for number in range(1, 7):
        at = [i for i, s in enumerate(segments) if s == number]
        assert row.position_ids[0, at].tolist() == list(range(20, 25))
        assert row.labels[0, at[0]] == IGNORE_INDEX
    mask = row.attention_mask(torch.device("cpu"))[0, 0]
    first, second = ([i for i, s in enumerate(segments) if s == n] for n in (1, 2))
    assert mask[second[-1], :20].all() and mask[second[-1], second].all()
    assert not mask[second[-1], first].any() and not mask[first[0], second].any()
    assert not mask[0, 1:].any()  # causal inside the prompt


def test_prompts_group_apart_and_unshared_samples_pack_together() -> None:
    other = list(range(700, 712))
    samples = [chat([1], [2, 3]) for _ in range(3)] + [chat([1], [2, 3], other) for _ in range(3)]
    samples += [EncodedSample([900 + i, 901, 902], [IGNORE_INDEX, 901, 902]) for i in range(4)]
    rows = pack(samples, token_budget=256, seed=0)
    assert len(rows) == 3
    prefixes = sorted((r.segments == 0).sum().item() for r in rows if r.segments is not None)
    assert prefixes == [12, 20]  # the whole prompt: here the question is one token
    (plain,) = [r for r in rows if r.segments is None]
    assert plain.samples == 4 and plain.position_ids[0].tolist() == [0, 1, 2] * 4


def test_questions_over_the_same_passages_group_apart_from_the_rest() -> None:
    """Plain questions share only the system turn (20 tokens); questions over the same passages
    share 320; those asked over the passages with one left out share 120 with them and 270 among
    themselves. Each family is a group of its own, its whole prompt held once per row."""
    passages = list(range(500, 800))
    missing = passages[:100] + passages[150:]
    plain = [chat([30 + i, 31], [40 + i, 41]) for i in range(6)]
    grounded = [chat([*passages, 30 + i], [40 + i, 41]) for i in range(6)]
    without = [chat([*missing, 30 + i], [40 + i, 41]) for i in range(4)]
    rows = pack(plain + grounded + without, token_budget=512, seed=0)
    prefixes = sorted(int((r.segments == 0).sum()) for r in rows if r.segments is not None)
    assert prefixes == [20, 20 + 250, 20 + 300]  # each family's whole shared prompt, once
    assert sum(r.samples for r in rows) == 16 and len(rows) == 3


def test_a_prefix_never_reaches_into_an_answer() -> None:
    same = [chat([7, 8], [9, 10, 11]), chat([7, 8], [9, 10, 12])]
    (row,) = pack(same, token_budget=64, seed=0)
    # The prompt and the question's "7" only: "8" stays with each sample, as the token that
    # predicts the first trained one ("9"), which both share but must train each.
    assert (row.segments == 0).sum() == 21
    assert row.trained_tokens == 2 * 3


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_shared_prefix_loss_and_logits_equal_the_samples_alone(tiny_model_dir: Path, attention: str) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attention)
    model.eval()
    generator = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return torch.randint(0, 1000, (n,), generator=generator).tolist()

    prompt = ids(20)
    samples = [chat(ids(q), ids(a), prompt) for q, a in ((3, 9), (5, 4), (2, 12), (6, 7))]
    (row,) = pack(samples, token_budget=256, seed=0)
    assert row.segments is not None and row.tokens < row.sample_tokens
    mask = row.attention_mask(torch.device("cpu"), torch.float32 if attention == "eager" else None)

    with torch.no_grad():
        out = model(
            input_ids=row.input_ids,
            position_ids=row.position_ids,
            attention_mask=mask,
            labels=row.labels,
            use_cache=False,
        )
        packed_loss = float(out.loss) * row.trained_tokens
        separate = 0.0
        segments = row.segments.tolist()
        for number in range(1, len(samples) + 1):
            at = [i for i, s in enumerate(segments) if s == number]
            suffix = row.input_ids[0, at].tolist()
            (sample,) = [s for s in samples if s.input_ids[-len(suffix) :] == suffix]
            alone = model(input_ids=torch.tensor([sample.input_ids]), labels=torch.tensor([sample.labels]))
            separate += float(alone.loss) * sample.trained_tokens
            # The suffix's logits in the row equal the same positions' logits of the sample alone.
            assert torch.allclose(out.logits[0, at], alone.logits[0, -len(suffix) :], atol=1e-4)
    assert packed_loss == pytest.approx(separate, rel=1e-4)
