"""Per-row logits processors: logit bias, min_tokens, repetition/frequency/presence penalties, grammar.

Contract: :func:`process_rows` rewrites a step's logits ``[batch, vocab]`` (float32) in place, each
row by its own :class:`RowLogits` state, so rows with different rules (or none) share one forward
pass. Order, as vLLM's: grammar mask, min_tokens (end-of-sequence masked), logit_bias, then the
penalties (repetition over prompt and output, frequency and presence over the output). Rows
without rules cost nothing; a row's state lives as long as the row. :meth:`RowLogits.accept`
records each sampled token (and feeds it to the row's grammar). Penalty bookkeeping is sparse
(the distinct tokens seen), so a 150k-token vocabulary costs no more than a 50k one.
"""

from __future__ import annotations

from collections import Counter

import torch

from server.engine.requests import RowConstraint
from server.engine.sampling import SamplingParams


class RowLogits:
    """One row's processors and the state they keep."""

    def __init__(
        self,
        params: SamplingParams,
        prompt_ids: list[int],
        eos_ids: frozenset[int],
        constraint: RowConstraint | None = None,
    ) -> None:
        self.params = params
        self.constraint = constraint
        self.eos_ids = sorted(eos_ids)
        self._generated: Counter[int] = Counter()
        self._prompt = frozenset(prompt_ids) if params.repetition_penalty != 1.0 else frozenset()
        self.active = params.processes_logits or constraint is not None

    @property
    def finished(self) -> bool:
        """The row's grammar is complete (only end-of-sequence could follow)."""
        return self.constraint is not None and self.constraint.finished

    @property
    def error(self) -> str | None:
        """Why the row's grammar stopped it, if it did."""
        return self.constraint.error if self.constraint is not None else None

    def accept(self, token: int) -> bool:
        """Record a sampled token; False if it broke the row's grammar."""
        if self.params.processes_logits:
            self._generated[token] += 1
        return self.constraint is None or self.constraint.accept(token)

    def apply(self, logits: torch.Tensor) -> None:
        """Every rule but the grammar, in place, on this row's ``[vocab]`` logits."""
        p = self.params
        device = logits.device
        if p.min_tokens and sum(self._generated.values()) < p.min_tokens and self.eos_ids:
            logits[torch.tensor(self.eos_ids, device=device)] = float("-inf")
        if p.logit_bias:
            ids = torch.tensor([t for t, _ in p.logit_bias if t < logits.shape[0]], device=device, dtype=torch.long)
            bias = torch.tensor([b for t, b in p.logit_bias if t < logits.shape[0]], device=device)
            logits.index_add_(0, ids, bias.to(logits.dtype))
        if p.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(self._prompt | self._generated.keys()), device=device, dtype=torch.long)
            if seen.numel():
                values = logits[seen]
                penalised = torch.where(values > 0, values / p.repetition_penalty, values * p.repetition_penalty)
                logits[seen] = penalised
        if (p.frequency_penalty or p.presence_penalty) and self._generated:
            ids = torch.tensor(list(self._generated), device=device, dtype=torch.long)
            counts = torch.tensor(list(self._generated.values()), device=device, dtype=logits.dtype)
            logits.index_add_(0, ids, -(p.frequency_penalty * counts + p.presence_penalty))


class GrammarMasks:
    """A reusable int32 bitmask buffer for the rows that carry a grammar."""

    def __init__(self, vocab: int) -> None:
        self.words = (vocab + 31) // 32
        self._buffer = torch.empty((0, self.words), dtype=torch.int32)

    def rows(self, count: int) -> torch.Tensor:
        if self._buffer.shape[0] < count:
            self._buffer = torch.empty((count, self.words), dtype=torch.int32)
        return self._buffer[:count]


def process_rows(logits: torch.Tensor, rows: list[RowLogits], masks: GrammarMasks) -> None:
    """Apply every row's processors to ``logits`` (``[len(rows), vocab]``) in place."""
    from server.engine.grammar import apply_bitmask  # llguidance only loads when a grammar is used

    constrained = [i for i, row in enumerate(rows) if row.constraint is not None]
    if constrained:
        bitmask = masks.rows(len(rows))
        for i in constrained:
            constraint = rows[i].constraint
            assert constraint is not None
            constraint.fill_bitmask(bitmask, i)
        apply_bitmask(logits, bitmask, constrained)
    for i, row in enumerate(rows):
        if row.params.processes_logits:
            row.apply(logits[i])
