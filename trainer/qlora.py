"""QLoRA: LoRA adapters trained on the NF4 base the server serves (work in progress)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters.base_model import BaseModelSpec
from trainer.hyperparameters import Hyperparameters
from trainer.packing import PackedBatch


@dataclass
class Prepared:
    """A base model with trainable LoRA layers, ready for :func:`train`."""

    model: torch.nn.Module
    tokenizer: object
    spec: BaseModelSpec
    device: torch.device


@dataclass(frozen=True)
class TrainResult:
    steps: int
    trained_tokens: int
    seconds: float
    final_loss: float
    stopped_early: bool


def prepare_model(
    base_model_dir: Path,
    hp: Hyperparameters,
    *,
    device: str | None = None,
    quantize: bool = True,
    init_adapter: Path | None = None,
) -> Prepared:
    raise NotImplementedError


def train(
    prepared: Prepared,
    batches: list[PackedBatch],
    hp: Hyperparameters,
    *,
    seed: int,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    raise NotImplementedError
