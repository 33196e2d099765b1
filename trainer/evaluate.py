"""Evaluation: held-out loss and probe recall (work in progress)."""

from __future__ import annotations

from trainer.packing import PackedBatch
from trainer.qlora import Prepared


def eval_loss(prepared: Prepared, batches: list[PackedBatch]) -> float:
    raise NotImplementedError


def probe_recall(
    prepared: Prepared, probes: list, system_prompt: str | None, max_new_tokens: int = 48
) -> tuple[float, list[dict]]:
    raise NotImplementedError
