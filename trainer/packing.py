"""Packing: several encoded samples per row, no padding, attention kept inside each sample.

:func:`pack` places samples into rows of at most ``token_budget`` tokens by first-fit
decreasing (longest first, each into the first row with room), after shuffling with ``seed`` so
equal-length samples are spread deterministically. A sample longer than the budget is cut to it.
Each row becomes a :class:`PackedBatch` of shape (1, T) whose ``position_ids`` restart at 0 at
every sample start. Called with ``attention_mask=None`` AND ``use_cache=False``, transformers
(5.x, sdpa and eager) turns restarting position ids into a block-diagonal causal mask, so a
packed row computes the same logits as its samples one by one; with a cache (the default
``use_cache=True``) it silently ignores the restarts and samples attend to earlier ones
(``tests/trainer/test_packing.py`` checks both on a real model).

The first label of every sample is made -100 in the row too: the causal-LM loss shifts labels by
one, so it would otherwise train the previous sample's last token to predict this sample's first.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer.tokenize import IGNORE_INDEX, EncodedSample


@dataclass(frozen=True)
class PackedBatch:
    """One packed row: LongTensors of shape (1, T)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor

    @property
    def tokens(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def trained_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    @property
    def samples(self) -> int:
        """How many samples the row holds (each starts at position 0)."""
        return int((self.position_ids == 0).sum())


def _row(samples: Sequence[EncodedSample]) -> PackedBatch:
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for sample in samples:
        ids += sample.input_ids
        labels += [IGNORE_INDEX, *sample.labels[1:]]
        positions += range(len(sample.input_ids))

    def tensor(values: list[int]) -> torch.Tensor:
        return torch.tensor([values], dtype=torch.long)

    return PackedBatch(tensor(ids), tensor(labels), tensor(positions))


def _cut(sample: EncodedSample, budget: int) -> EncodedSample:
    if len(sample) <= budget:
        return sample
    return EncodedSample(sample.input_ids[:budget], sample.labels[:budget])


def pack(samples: Sequence[EncodedSample], token_budget: int, seed: int) -> list[PackedBatch]:
    """Rows of at most ``token_budget`` tokens holding every sample once, in a seeded order."""
    if token_budget < 1:
        raise ValueError("token_budget must be at least 1.")
    order = [_cut(s, token_budget) for s in samples if len(s) > 0]
    random.Random(seed).shuffle(order)
    order.sort(key=len, reverse=True)  # stable: ties keep the shuffled order
    rows: list[list[EncodedSample]] = []
    room: list[int] = []
    for sample in order:
        for index, free in enumerate(room):
            if len(sample) <= free:
                rows[index].append(sample)
                room[index] -= len(sample)
                break
        else:
            rows.append([sample])
            room.append(token_budget - len(sample))
    random.Random(seed + 1).shuffle(rows)  # the longest samples should not all come first
    return [_row(row) for row in rows]
