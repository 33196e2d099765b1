"""DPO's recipe: preference pairs -> pair rows with their reference, DPO's loss, preference accuracy.

- :func:`split_pairs`: the held-out pairs of a job without a validation file: about
  ``heldout_fraction`` of them (at least one when there are two or more and the fraction is
  above 0; training always keeps one), chosen by the seed.
- :class:`PreferenceRecipe` (a :class:`trainer.recipe.Recipe`): its rows are
  :func:`trainer.preference_rows.pair_rows` with the reference policy's log-probabilities
  attached (:func:`trainer.dpo.with_reference`: the model as the job loaded it, i.e. the base or
  the adapter the job continues from); a step minimises :func:`trainer.dpo.objective`; a
  measurement is :func:`trainer.dpo.evaluate_pairs` on the held-out pairs plus the greedy replies
  to up to :data:`MAX_ANSWERS` held-out prompts, which the manifest keeps before and after
  training as ``heldout_answers`` (with the preferred answer to compare).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer.dpo import evaluate_pairs, objective, with_reference
from trainer.evaluate import generate_answers
from trainer.objective import Objective
from trainer.packing import PackedBatch
from trainer.preference_data import PreferencePair
from trainer.preference_rows import PairRow, pair_rows
from trainer.qlora import Prepared
from trainer.recipe import Evaluation

MAX_ANSWERS = 16
"""Held-out prompts answered before and after training (two generation batches)."""
MAX_NEW_TOKENS = 64


def split_pairs(
    pairs: Sequence[PreferencePair], fraction: float, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(training pairs, held-out pairs); see the module docstring."""
    wanted = round(len(pairs) * fraction)
    if fraction > 0 and len(pairs) >= 2:
        wanted = min(max(1, wanted), len(pairs) - 1)
    order = list(pairs)
    random.Random(seed).shuffle(order)
    return order[wanted:], order[:wanted]


@dataclass
class PreferenceRecipe:
    """A DPO job's pairs and beta (see the module docstring)."""

    train: list[PreferencePair]
    heldout: list[PreferencePair]
    system_prompt: str | None
    beta: float
    sft_weight: float = 0.0
    objective: Objective = field(init=False)

    def __post_init__(self) -> None:
        self.objective = objective(self.beta, self.sft_weight)

    @property
    def stats(self) -> dict[str, Any]:
        return {"train_pairs": len(self.train), "heldout_pairs": len(self.heldout)}

    def summary(self) -> str:
        return f"{len(self.train)} preference pairs (DPO, beta {self.beta:g}, sft_weight {self.sft_weight:g})"

    def rows(self, prepared: Prepared, budget: int, seed: int) -> tuple[list[PairRow], list[PairRow]]:
        def rows_of(pairs: Sequence[PreferencePair]) -> list[PairRow]:
            built = pair_rows(prepared.tokenizer, pairs, self.system_prompt, budget, prepared.context_length, seed)
            return with_reference(prepared, built)

        return rows_of(self.train), rows_of(self.heldout)

    def evaluate(self, prepared: Prepared, held_rows: Sequence[PackedBatch]) -> Evaluation:
        rows = [row for row in held_rows if isinstance(row, PairRow)]
        measured = evaluate_pairs(prepared, rows, self.beta)
        asked = self.heldout[:MAX_ANSWERS]
        replies = generate_answers(prepared, [p.messages for p in asked], self.system_prompt, MAX_NEW_TOKENS)
        answers = [
            {"prompt": p.messages[-1]["content"], "preferred": p.preferred, "answer": reply}
            for p, reply in zip(asked, replies, strict=True)
        ]
        return Evaluation(
            measured.loss,
            preference_accuracy=measured.accuracy,
            reward_margin=measured.margin,
            answers=answers,
        )

    def extra(self, before: Evaluation, after: Evaluation) -> dict[str, Any]:
        answers = [
            {
                "prompt": b["prompt"],
                "preferred": b["preferred"],
                "answer_before": b["answer"],
                "answer_after": a["answer"],
            }
            for b, a in zip(before.answers, after.answers, strict=True)
        ]
        return {"heldout_answers": answers}
