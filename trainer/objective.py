"""What the training loop minimises over a packed row: the supervised loss, or any other objective.

- :func:`answer_logits`: one forward pass over a packed row that makes logits only at the
  positions whose next token carries a label (about a third of a row in chat samples), not over
  the whole row: the output head over the vocabulary (49k for SmolLM2, 128k for Llama 3) is the
  largest single cost of a CPU step and the largest activation on a GPU. Returns those logits
  (fp32), the labels they predict and the positions kept.
- :func:`row_loss`: mean cross-entropy over the trained (assistant) tokens of one row; equal to
  transformers' own shifted, label-masked mean.
- :class:`Objective`: a row's loss (a mean over the row's units: answer tokens, or preference
  pairs) and the row's weight in an optimizer step (its unit count);
  :data:`SUPERVISED` is :func:`row_loss` weighted by trained tokens, DPO's is
  :func:`trainer.dpo.objective`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from trainer.packing import PackedBatch
from trainer.tokenize import IGNORE_INDEX

if TYPE_CHECKING:
    from trainer.qlora import Prepared


def answer_logits(prepared: Prepared, row: PackedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits (K, vocab) in fp32, their target labels (K,), the K positions kept) for ``row``."""
    device = prepared.device
    targets = row.labels.to(device)[0, 1:]
    keep = (targets != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    eager = getattr(prepared.model.config, "_attn_implementation", None) == "eager"
    # Under a bf16 plan the forward runs in bf16 (autocast), as the QLoRA recipe does: the
    # embeddings and norms are fp32, which would otherwise carry fp32 activations (slow matrix
    # units) through every layer. LoRA weights and optimizer states stay fp32.
    with prepared.precision():
        out = prepared.model(
            input_ids=row.input_ids.to(device),
            position_ids=row.position_ids.to(device),
            attention_mask=row.attention_mask(device, torch.float32 if eager else None),
            use_cache=False,  # with a cache, transformers ignores the packed position ids (no block mask)
            logits_to_keep=keep,
        )
    return out.logits[0].float(), targets[keep], keep


def row_loss(prepared: Prepared, row: PackedBatch) -> torch.Tensor:
    """Mean cross-entropy over the trained (assistant) tokens of one packed row."""
    logits, targets, _ = answer_logits(prepared, row)
    return torch.nn.functional.cross_entropy(logits, targets)


@dataclass(frozen=True)
class Objective:
    """What the training loop minimises (see the module docstring)."""

    loss: Callable[[Prepared, PackedBatch], torch.Tensor]
    weight: Callable[[PackedBatch], float]
    preference: bool = False
    """Rows of preference pairs: the plan counts pairs and follows DPO's rules."""


SUPERVISED = Objective(row_loss, lambda row: float(row.trained_tokens))
"""Next-token cross-entropy on the answers, every trained token weighing the same."""
