"""Supervised fine-tuning's recipe: chat samples -> packed rows, the answers' loss, probe recall.

:class:`SupervisedRecipe` (a :class:`trainer.recipe.Recipe`) holds a job's
:class:`~trainer.samples.SampleSet`: its rows are the samples tokenized
(:func:`trainer.tokenize.encode`) and packed (:func:`trainer.packing.pack`); a step minimises
the answers' cross-entropy (:data:`trainer.objective.SUPERVISED`); a measurement is the held-out
loss and the probe recall (:mod:`trainer.evaluate`), whose answers the manifest keeps as
``probe_answers``.

With ``passages`` (the training documents' passages, when the tenant's retrieval is on) about half
of the question/answer samples, training and held-out, are asked with passages as chat will ask
them (:mod:`trainer.raft`, by the tokenizer's passage budget), and training adds one question the
documents do not answer (:mod:`trainer.out_of_scope`), asked with the passages and answered "I do
not know", per ten grounded samples. Grounded samples are packed in rows
of the budget plus the passage budget: the passages are a prefix the packer holds once per row.
The probes still ask the adapter alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.grounding_context import passage_budget, passage_cost
from trainer.evaluate import eval_loss, probe_recall
from trainer.objective import SUPERVISED, Objective
from trainer.out_of_scope import unanswered
from trainer.packing import PackedBatch, pack
from trainer.qlora import Prepared
from trainer.raft import abstention_samples, ground_samples, is_grounded
from trainer.recipe import Evaluation
from trainer.samples import Sample, SampleSet
from trainer.tokenize import encode

ABSTAIN_SHARE = 0.1
"""Abstention samples added per grounded training sample (:func:`trainer.raft.abstention_samples`)."""


@dataclass
class SupervisedRecipe:
    """A supervised job's samples (see the module docstring)."""

    samples: SampleSet
    system_prompt: str | None
    passages: list[tuple[str, str]] | None = None
    objective: Objective = field(default=SUPERVISED)

    @property
    def stats(self) -> dict[str, Any]:
        return self.samples.stats

    def summary(self) -> str:
        return f"{len(self.samples.train)} training samples"

    def rows(self, prepared: Prepared, budget: int, seed: int) -> tuple[list[PackedBatch], list[PackedBatch]]:
        train, heldout = self.samples.train, self.samples.heldout
        room = passage_budget(prepared.context_length) if self.passages else 0
        if self.passages:
            cost = lambda p: passage_cost(prepared.tokenizer, *p)  # noqa: E731
            train = ground_samples(train, self.passages, cost, room, seed=seed)
            heldout = ground_samples(heldout, self.passages, cost, room, seed=seed + 1)
            grounded = sum(map(is_grounded, train))
            if train and grounded:
                questions = unanswered(" ".join(f"{h} {t}" for h, t in self.passages))
                count = max(1, round(ABSTAIN_SHARE * grounded))
                train = [
                    *train,
                    *abstention_samples(train[0], questions, self.passages, cost, room, count=count, seed=seed),
                ]
            self.stats.update(
                passages=len(self.passages),
                grounded_samples=grounded,
                abstention_samples=len(train) - len(self.samples.train),
            )

        def packed(samples: Sequence[Sample]) -> list[PackedBatch]:
            plain = [encode(prepared.tokenizer, s.messages) for s in samples if not is_grounded(s)]
            grounded = [encode(prepared.tokenizer, s.messages) for s in samples if is_grounded(s)]
            rows = pack(plain, budget, seed) + (pack(grounded, budget + room, seed) if grounded else [])
            random.Random(seed).shuffle(rows)
            return rows

        return packed(train), packed(heldout)

    def evaluate(self, prepared: Prepared, held_rows: Sequence[PackedBatch]) -> Evaluation:
        loss = eval_loss(prepared, held_rows)
        recall, answers = probe_recall(prepared, self.samples.probes, self.system_prompt)
        return Evaluation(loss, probe_recall=recall, answers=answers)

    def extra(self, before: Evaluation, after: Evaluation) -> dict[str, Any]:
        return {"probe_answers": after.answers}
