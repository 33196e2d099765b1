"""The learning rate over a training run: linear warm-up, then cosine decay, fitted to a time budget.

Contract: :func:`learning_rate_at` is the rate at a step of a run of ``total`` steps;
:class:`Schedule` holds a run's plan and :meth:`Schedule.replan` shortens it (never lengthens
it) so that the decay ends inside ``max_seconds`` at the pace measured so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from adapters.hyperparameters import Resolved


def learning_rate_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay reaching 0 after ``total`` steps."""
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Schedule:
    """Warm-up then cosine decay over ``total`` steps; :meth:`replan` moves ``total`` so the decay
    ends inside the time budget, never beyond the original plan."""

    planned: int
    warmup: int
    peak: float
    max_seconds: float
    total: int

    @classmethod
    def of(cls, resolved: Resolved, warmup_ratio: float) -> Schedule:
        planned = resolved.total_steps
        return cls(planned, round(warmup_ratio * planned), resolved.learning_rate, resolved.max_seconds, planned)

    def learning_rate(self, step: int) -> float:
        return learning_rate_at(step, self.total, self.warmup, self.peak)

    def replan(self, step: int, elapsed: float) -> None:
        """After ``step`` steps in ``elapsed`` seconds: as many steps as the mean step time affords."""
        affordable = step + int((self.max_seconds - elapsed) / (elapsed / step))
        self.total = max(step, min(self.planned, affordable))
