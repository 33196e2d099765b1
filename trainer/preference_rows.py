"""Preference pairs -> packed rows for DPO: each pair's two answers side by side, its prompt shared.

:func:`pair_rows` renders every pair twice, the conversation (with the tenant's system prompt,
:func:`adapters.chat_format.conversation`, exactly as chat builds it) followed by the preferred
answer and by the non-preferred one, labelled on that answer only
(:func:`trainer.tokenize.encode` with ``last_turn_only``). Pairs are then packed in a seeded
order into rows of about ``token_budget`` tokens with :func:`trainer.packing.packed_row`: the
prompt tokens all the row's samples share (at least the system turn, and the whole prompt of a
row holding one pair) are computed once, each answer attends to them and to itself only. A
pair is never split across rows; a pair longer than the budget gets a row of its own, and only
an answer longer than the model's context is cut (to it).

A :class:`PairRow` is a :class:`~trainer.packing.PackedBatch` whose samples come in pairs:
sample ``2k`` is pair ``k``'s preferred answer, ``2k + 1`` its non-preferred one; ``owners``
says which sample each token belongs to (-1 on the shared prefix). ``reference`` holds the
reference policy's summed log-probabilities of the row's samples once computed
(:func:`trainer.dpo.with_reference`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch

from adapters.chat_format import conversation
from trainer.packing import MIN_SHARED_PREFIX, PackedBatch, common_length, cut_to, packed_row, shareable_head
from trainer.preference_data import PreferencePair
from trainer.tokenize import EncodedSample, encode

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class PairRow(PackedBatch):
    """A packed row of preference pairs (see the module docstring)."""

    owners: torch.Tensor | None = None
    """(T,) the sample each token belongs to; -1 on the shared prefix."""
    reference: torch.Tensor | None = None
    """(samples,) the reference policy's summed completion log-probabilities, once computed."""

    @property
    def pairs(self) -> int:
        return self.samples // 2


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, pair: PreferencePair, system_prompt: str | None
) -> tuple[EncodedSample, ...]:
    """The pair's (preferred, non-preferred) samples, labelled on the answer only."""
    prompt = conversation(pair.messages, system_prompt)
    return tuple(
        encode(tokenizer, [*prompt, {"role": "assistant", "content": answer}], last_turn_only=True)
        for answer in (pair.preferred, pair.non_preferred)
    )


def _prefix(samples: Sequence[EncodedSample]) -> int:
    """Tokens all ``samples`` may share (0 when fewer than :data:`MIN_SHARED_PREFIX`)."""
    heads = [shareable_head(s) for s in samples]
    shared = min(common_length(heads[0], head) for head in heads)
    return shared if shared >= MIN_SHARED_PREFIX or len(samples) == 2 else 0


def _row(samples: list[EncodedSample]) -> PairRow:
    prefix = _prefix(samples)
    row = packed_row(prefix, samples)
    owners = [-1] * prefix + [i for i, s in enumerate(samples) for _ in range(len(s) - prefix)]
    base = {f.name: getattr(row, f.name) for f in fields(PackedBatch)}
    return PairRow(**base, owners=torch.tensor(owners, dtype=torch.long))


def _length(samples: list[EncodedSample]) -> int:
    prefix = _prefix(samples)
    return prefix + sum(len(s) - prefix for s in samples)


def pair_rows(
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[PreferencePair],
    system_prompt: str | None,
    token_budget: int,
    context_length: int,
    seed: int,
) -> list[PairRow]:
    """Rows holding every pair once, in a seeded order (see the module docstring)."""
    encoded = [[cut_to(s, context_length) for s in encode_pair(tokenizer, p, system_prompt)] for p in pairs]
    random.Random(seed).shuffle(encoded)
    rows: list[PairRow] = []
    members: list[EncodedSample] = []
    for samples in encoded:
        if members and _length([*members, *samples]) > token_budget:
            rows.append(_row(members))
            members = []
        members += samples
    if members:
        rows.append(_row(members))
    return rows
