"""Packing: several encoded samples per row, no padding, a shared prompt computed once per row.

:func:`pack` first groups the samples by a shared leading prompt: chat samples all begin with the
same system turn (the tenant's system prompt, or the template's default one), often a third of a
short Q&A sample. Sorted by their prompts, samples that share a prefix sit next to each other, and
a run's common prefix is the smallest common prefix of its neighbouring pairs; a run whose prefix
is at least :data:`MIN_SHARED_PREFIX` tokens is a group. A run ends where keeping the next sample
would cost much shared prefix: where the common prefix drops :data:`SPLIT_GAIN` tokens below the
run's, or where the sample shares that much more with the one after it (questions asked over the
same passages share hundreds of tokens, and share only the system turn with the other samples).
The shared part stops before the first trained token of every member, so it holds prompt tokens
only.

Each group is packed on its own into rows of at most ``token_budget`` tokens by first-fit
decreasing (after a seeded shuffle, so equal lengths spread deterministically). A row of a group
holds the prefix once, then each member's remaining tokens (its *suffix*); a sample longer than
the budget is cut to it. The loss is exactly that of the samples one by one: every suffix token
attends to the prefix and to its own suffix only (:meth:`PackedBatch.attention_mask`), with the
position ids it has in its own sample, and the prefix's hidden states are the same for every
member (causal attention: they depend on the prefix alone). ``tests/trainer/test_packing.py``
checks it on a real model.

A row without a shared prefix (an ungrouped sample's row) restarts its position ids at 0 for
every sample and needs no mask: called with ``attention_mask=None`` AND ``use_cache=False``,
transformers (5.x, sdpa and eager) turns restarting position ids into a block-diagonal causal
mask; with a cache (the default ``use_cache=True``) it silently ignores the restarts.

The first label of every suffix is -100 (it is a prompt token anyway): the causal-LM loss shifts
labels by one, so it would otherwise train the previous sample's last token to predict it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer.tokenize import IGNORE_INDEX, EncodedSample

MIN_SHARED_PREFIX = 8
"""Shortest prefix worth sharing, in tokens."""
SPLIT_GAIN = 64
"""Tokens of shared prefix that are worth starting a new group for."""


@dataclass(frozen=True)
class PackedBatch:
    """One packed row: LongTensors of shape (1, T)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    samples: int
    """How many samples the row holds."""
    sample_tokens: int
    """The samples' own lengths summed (a shared prefix counted once per sample): the tokens the
    row trains on, which is more than :attr:`tokens` when its samples share a prefix."""
    segments: torch.Tensor | None = None
    """(T,) for a row with a shared prefix: 0 on the prefix, ``i`` on the i-th suffix; None for
    a row whose position ids restart per sample."""

    @property
    def tokens(self) -> int:
        """Tokens in the row (what the model computes)."""
        return int(self.input_ids.shape[1])

    @property
    def trained_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def attention_mask(self, device: torch.device, additive: torch.dtype | None = None) -> torch.Tensor | None:
        """``(1, 1, T, T)``: True where a query may attend a key (causal; a suffix sees the prefix
        and itself); with ``additive``, 0 / the dtype's minimum instead (for eager attention).
        None for a row without a shared prefix."""
        if self.segments is None:
            return None
        seg = self.segments.to(device)
        visible = (seg[:, None] == seg[None, :]) | (seg[None, :] == 0)
        mask = torch.ones(visible.shape, dtype=torch.bool, device=device).tril_() & visible
        if additive is not None:
            mask = torch.zeros(mask.shape, dtype=additive, device=device).masked_fill_(~mask, torch.finfo(additive).min)
        return mask[None, None]


def _tensor(values: list[int]) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.long)


def packed_row(prefix: int, samples: Sequence[EncodedSample]) -> PackedBatch:
    """One row: ``samples``' first ``prefix`` tokens once (when more than one sample shares
    them), then the rest of each."""
    shared = prefix if len(samples) > 1 else 0
    ids = list(samples[0].input_ids[:shared])
    labels = [IGNORE_INDEX] * shared
    positions = list(range(shared))
    segments = [0] * shared
    for number, sample in enumerate(samples, start=1):
        ids += sample.input_ids[shared:]
        labels += [IGNORE_INDEX, *sample.labels[shared + 1 :]]
        positions += range(shared, len(sample))
        segments += [number] * (len(sample) - shared)
    return PackedBatch(
        _tensor(ids),
        _tensor(labels),
        _tensor(positions),
        samples=len(samples),
        sample_tokens=sum(len(s) for s in samples),
        segments=torch.tensor(segments, dtype=torch.long) if shared else None,
    )


def cut_to(sample: EncodedSample, budget: int) -> EncodedSample:
    if len(sample) <= budget:
        return sample
    return EncodedSample(sample.input_ids[:budget], sample.labels[:budget])


def shareable_head(sample: EncodedSample) -> list[int]:
    """The tokens a sample may share: its prompt up to one before its first trained token (the
    suffix's first token must be unlabelled; see the module docstring)."""
    first = next((i for i, label in enumerate(sample.labels) if label != IGNORE_INDEX), len(sample))
    return sample.input_ids[: max(0, first - 1)]


def common_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefix_groups(samples: Sequence[EncodedSample]) -> list[tuple[int, list[EncodedSample]]]:
    """(shared prefix length, members) per group; the samples that share no prefix come last,
    together, with 0."""
    heads = sorted(((shareable_head(s), i) for i, s in enumerate(samples)))
    groups: list[tuple[int, list[int]]] = []
    run: list[int] = []
    shared = 0
    for position, (head, index) in enumerate(heads):
        common = common_length(heads[position - 1][0], head) if run else 0
        ahead = common_length(head, heads[position + 1][0]) if position + 1 < len(heads) else 0
        if run and common >= MIN_SHARED_PREFIX and shared - common < SPLIT_GAIN and ahead - common < SPLIT_GAIN:
            run.append(index)
            shared = min(shared, common)
            continue
        if run:
            groups.append(_group(run, shared))
        run, shared = [index], len(head)
    if run:
        groups.append(_group(run, shared))
    alone = sorted(i for prefix, members in groups if prefix == 0 for i in members)
    shared_groups = [(prefix, [samples[i] for i in members]) for prefix, members in groups if prefix > 0]
    return shared_groups + ([(0, [samples[i] for i in alone])] if alone else [])


def _group(run: list[int], shared: int) -> tuple[int, list[int]]:
    """A run's prefix and its members' indices in input order (the seeded shuffle)."""
    return (shared if len(run) > 1 else 0), sorted(run)


def _first_fit(prefix: int, members: list[EncodedSample], budget: int) -> list[list[EncodedSample]]:
    """First-fit decreasing of the members' suffixes into rows holding the prefix once."""
    rows: list[list[EncodedSample]] = []
    room: list[int] = []
    for sample in sorted(members, key=len, reverse=True):  # stable: ties keep the shuffled order
        need = len(sample) - prefix
        for index, free in enumerate(room):
            if need <= free:
                rows[index].append(sample)
                room[index] -= need
                break
        else:
            rows.append([sample])
            room.append(budget - len(sample))
    return rows


def pack(
    samples: Sequence[EncodedSample], token_budget: int, seed: int, *, share_prefix: bool = True
) -> list[PackedBatch]:
    """Rows of at most ``token_budget`` tokens holding every sample once, in a seeded order
    (``share_prefix=False``: no shared prompts, every row restarts its positions)."""
    if token_budget < 1:
        raise ValueError("token_budget must be at least 1.")
    order = [cut_to(s, token_budget) for s in samples if len(s) > 0]
    random.Random(seed).shuffle(order)
    groups = prefix_groups(order) if share_prefix else [(0, order)]
    rows = [
        packed_row(prefix, members) for prefix, group in groups for members in _first_fit(prefix, group, token_budget)
    ]
    random.Random(seed + 1).shuffle(rows)  # the longest samples should not all come first
    return rows
