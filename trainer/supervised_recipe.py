"""Supervised fine-tuning's recipe: chat samples -> packed rows, the answers' loss, probe recall.

:class:`SupervisedRecipe` (a :class:`trainer.recipe.Recipe`) holds a job's
:class:`~trainer.samples.SampleSet`: its rows are the samples tokenized
(:func:`trainer.tokenize.encode`) and packed (:func:`trainer.packing.pack`); a step minimises
the answers' cross-entropy (:data:`trainer.objective.SUPERVISED`); a measurement is the held-out
loss and the probe recall (:mod:`trainer.evaluate`), whose answers the manifest keeps as
``probe_answers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer.evaluate import eval_loss, probe_recall
from trainer.objective import SUPERVISED, Objective
from trainer.packing import PackedBatch, pack
from trainer.qlora import Prepared
from trainer.recipe import Evaluation
from trainer.samples import Sample, SampleSet
from trainer.tokenize import encode


@dataclass
class SupervisedRecipe:
    """A supervised job's samples (see the module docstring)."""

    samples: SampleSet
    system_prompt: str | None
    objective: Objective = field(default=SUPERVISED)

    @property
    def stats(self) -> dict[str, Any]:
        return self.samples.stats

    def summary(self) -> str:
        return f"{len(self.samples.train)} training samples"

    def rows(self, prepared: Prepared, budget: int, seed: int) -> tuple[list[PackedBatch], list[PackedBatch]]:
        def packed(samples: Sequence[Sample]) -> list[PackedBatch]:
            return pack([encode(prepared.tokenizer, s.messages) for s in samples], budget, seed)

        return packed(self.samples.train), packed(self.samples.heldout)

    def evaluate(self, prepared: Prepared, held_rows: Sequence[PackedBatch]) -> Evaluation:
        loss = eval_loss(prepared, held_rows)
        recall, answers = probe_recall(prepared, self.samples.probes, self.system_prompt)
        return Evaluation(loss, probe_recall=recall, answers=answers)

    def extra(self, before: Evaluation, after: Evaluation) -> dict[str, Any]:
        return {"probe_answers": after.answers}
