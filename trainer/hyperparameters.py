"""Transitional alias of :mod:`adapters.hyperparameters`, where the hyperparameter schema now lives.

Contract: re-exports the same objects (not copies), so ``trainer.hyperparameters.Hyperparameters
is adapters.hyperparameters.Hyperparameters``. New code imports :mod:`adapters.hyperparameters`.
This alias remains only while modules owned by other changes still import it (trainer/qlora.py,
trainer/publish.py, bench/, tests/trainer/test_qlora*.py); delete it once they have switched.
"""

from __future__ import annotations

from adapters.hyperparameters import (
    AUTO,
    MAX_RANK,
    TOKENS_PER_STEP,
    Auto,
    HyperparameterError,
    Hyperparameters,
    Resolved,
    normalise,
    parse,
)

__all__ = [
    "AUTO", "MAX_RANK", "TOKENS_PER_STEP", "Auto", "HyperparameterError", "Hyperparameters", "Resolved",
    "normalise", "parse",
]
