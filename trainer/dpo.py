"""Direct Preference Optimization (Rafailov et al., 2023): the loss, the log-probabilities it
compares, the reference pass and the held-out measures.

- :func:`dpo_loss`: the sigmoid loss per pair, ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r -
  ref_r)))``, with ``pi``/``ref`` the policy's and the reference's summed log-probabilities of
  the preferred (``c``) and non-preferred (``r``) answer; also returns the reward margins
  ``beta * ((pi_c - ref_c) - (pi_r - ref_r))`` (trl's ``rewards/margins``).
- :func:`sequence_logps`: those sums for every sample of a :class:`~trainer.preference_rows.PairRow`
  in one forward pass, logits made only where the next token is an answer token
  (:func:`trainer.objective.answer_logits`, as the supervised loss).
- :func:`with_reference`: the rows with the reference policy's sums attached, computed once
  before training without gradients (trl's ``precompute_ref_log_probs``): the reference is the
  model as training starts, i.e. the base (a new LoRA adds exactly zero) or the adapter the job
  continues from, frozen; no second model is kept.
- :func:`objective`: DPO as a :class:`trainer.objective.Objective` for the shared training loop (a
  row's loss is the mean over its pairs; a row weighs its pair count in a step). With
  ``sft_weight`` each pair's loss adds that times the preferred answer's mean negative
  log-likelihood per token (RPO; trl's ``loss_type=["sigmoid", "sft"]`` with that weight, equal
  for a batch of one pair): pure DPO may raise the margin while the preferred answer itself
  becomes less likely, and greedy answers degenerate.
- :func:`evaluate_pairs`: held-out DPO loss, preference accuracy (share of pairs whose reward
  margin is above 0: 0 before training, where policy and reference are the same model) and mean
  reward margin, in eval mode without gradients; NaN without pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from trainer.objective import Objective, answer_logits
from trainer.preference_rows import PairRow
from trainer.qlora import Prepared
from trainer.tokenize import IGNORE_INDEX


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss per pair, reward margin per pair) of DPO's sigmoid loss (see the module docstring)."""
    margins = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return -F.logsigmoid(margins), margins


def sequence_logps(prepared: Prepared, row: PairRow) -> torch.Tensor:
    """(samples,) each sample's summed log-probability of its labelled (answer) tokens."""
    assert row.owners is not None  # every PairRow is built with its owners
    logits, targets, keep = answer_logits(prepared, row)
    token_logps = -F.cross_entropy(logits, targets, reduction="none")
    owners = row.owners.to(prepared.device)[1:][keep]  # position i predicts token i + 1
    return torch.zeros(row.samples, device=prepared.device).index_add(0, owners, token_logps)


def answer_lengths(row: PairRow) -> torch.Tensor:
    """(samples,) the number of labelled (answer) tokens of each sample."""
    assert row.owners is not None
    labelled = row.labels[0, 1:] != IGNORE_INDEX
    owners = row.owners[1:][labelled]
    return torch.zeros(row.samples).index_add(0, owners, torch.ones(owners.shape))


def _pair_terms(
    prepared: Prepared, row: PairRow, beta: float, sft_weight: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(losses, margins) of the row's pairs under the policy as it is now; with ``sft_weight``
    the loss adds that times the preferred answer's mean negative log-likelihood per token."""
    assert row.reference is not None, "with_reference() must run before training or evaluation"
    policy = sequence_logps(prepared, row).view(-1, 2)
    reference = row.reference.to(policy.device).view(-1, 2)
    losses, margins = dpo_loss(policy[:, 0], policy[:, 1], reference[:, 0], reference[:, 1], beta)
    if sft_weight:
        lengths = answer_lengths(row).to(policy.device).view(-1, 2)
        losses = losses - sft_weight * policy[:, 0] / lengths[:, 0]
    return losses, margins


@torch.no_grad()
def with_reference(prepared: Prepared, rows: Sequence[PairRow]) -> list[PairRow]:
    """``rows`` with the reference log-probabilities (the model as it is now) attached."""
    training = prepared.model.training
    prepared.model.eval()
    try:
        return [replace(row, reference=sequence_logps(prepared, row).cpu()) for row in rows]
    finally:
        prepared.model.train(training)


def objective(beta: float, sft_weight: float = 0.0) -> Objective:
    """DPO with ``beta`` (and ``sft_weight``) for :func:`trainer.qlora.train`."""

    def loss(prepared: Prepared, row: object) -> torch.Tensor:
        assert isinstance(row, PairRow)
        return _pair_terms(prepared, row, beta, sft_weight)[0].mean()

    def weight(row: object) -> float:
        assert isinstance(row, PairRow)
        return float(row.pairs)

    return Objective(loss, weight, preference=True)


@dataclass(frozen=True)
class PreferenceEval:
    """Held-out DPO measures."""

    loss: float
    accuracy: float
    """Share of pairs whose reward margin is above 0."""
    margin: float
    """Mean reward margin."""
    pairs: int


@torch.no_grad()
def evaluate_pairs(prepared: Prepared, rows: Sequence[PairRow], beta: float) -> PreferenceEval:
    """The held-out measures of ``rows`` (see the module docstring)."""
    prepared.model.eval()
    terms = [_pair_terms(prepared, row, beta) for row in rows]
    if not terms:
        return PreferenceEval(float("nan"), float("nan"), float("nan"), 0)
    losses = torch.cat([t[0] for t in terms])
    margins = torch.cat([t[1] for t in terms])
    return PreferenceEval(
        float(losses.mean()), float((margins > 0).float().mean()), float(margins.mean()), int(margins.numel())
    )
