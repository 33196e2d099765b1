"""A job's recipe: what it trains on, what a step minimises and how the result is measured.

The job's stages (:mod:`trainer.job`) run the same way for every training method; what differs
is behind :class:`Recipe`:

- :class:`trainer.supervised_recipe.SupervisedRecipe`: chat samples packed into rows, the
  answers' cross-entropy, held-out loss and probe recall;
- :class:`trainer.preference_recipe.PreferenceRecipe`: preference pairs, DPO's loss against a
  frozen reference, held-out DPO loss, preference accuracy and reward margin.

:class:`Evaluation` is one measurement (before or after training): the eval event it sends and
the manifest metrics it gives (``<name>_before``/``<name>_after``, the names its event has;
fields a recipe does not measure are left out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from adapters.worker_events import EvalEvent, Stage
from trainer.objective import Objective

if TYPE_CHECKING:
    from trainer.packing import PackedBatch
    from trainer.qlora import Prepared


@dataclass(frozen=True)
class Evaluation:
    """One measurement of the model on held-out data."""

    eval_loss: float
    """Held-out loss: per answer token (supervised) or DPO's per pair."""
    probe_recall: float | None = None
    preference_accuracy: float | None = None
    reward_margin: float | None = None
    answers: list[dict[str, Any]] = field(default_factory=list)
    """The replies the measurement generated (probes, or held-out prompts)."""

    def event(self, stage: Stage) -> EvalEvent:
        return EvalEvent(stage, self.eval_loss, self.probe_recall, self.preference_accuracy, self.reward_margin)

    def metrics(self, stage: Stage) -> dict[str, float]:
        """``{"eval_loss_before": ..., ...}``: the measured values named by ``stage``."""
        values = {
            "eval_loss": self.eval_loss,
            "probe_recall": self.probe_recall,
            "preference_accuracy": self.preference_accuracy,
            "reward_margin": self.reward_margin,
        }
        return {f"{name}_{stage}": value for name, value in values.items() if value is not None}


class Recipe(Protocol):
    """What a job trains on and how (see the module docstring)."""

    objective: Objective

    @property
    def stats(self) -> dict[str, Any]:
        """Counts for the job's manifest (``samples`` in its extras)."""
        ...

    def summary(self) -> str:
        """What the job trains on, for its ``running`` status: ``240 training samples``."""
        ...

    def rows(self, prepared: Prepared, budget: int, seed: int) -> tuple[Sequence[PackedBatch], Sequence[PackedBatch]]:
        """(training rows, held-out rows) of at most about ``budget`` tokens each."""
        ...

    def evaluate(self, prepared: Prepared, held_rows: Sequence[PackedBatch]) -> Evaluation:
        """The held-out measurement of the model as it is now."""
        ...

    def extra(self, before: Evaluation, after: Evaluation) -> dict[str, Any]:
        """The manifest extras this recipe adds (answers given before and after)."""
        ...
