"""Evaluation of a prepared model: held-out loss and probe recall, before and after training.

- :func:`eval_loss`: the mean loss per trained (assistant) token over packed held-out rows, in
  eval mode without gradients; NaN when there is nothing to evaluate.
- :func:`generate_answers`: the model's greedy replies to conversations, each prompt built
  exactly as the server builds it (:mod:`adapters.chat_format`, the tenant's system prompt, the
  generation prompt), in left-padded batches of :data:`PROBE_BATCH`.
- :func:`probe_recall`: each probe question is asked so (one user turn), and a reply counts when
  :func:`trainer.recall.answer_matches` finds one of the probe's expected terms in it. Returns
  the share answered correctly (NaN with no probes) and one record per probe.
- :func:`stored_adapter_recall`: a published adapter loaded from its store directory onto a
  fresh NF4 base, as the server loads it, and the probes asked with the adapter off and on:
  ``(recall without, recall with, per-probe records with)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from adapters.base_model import load_base
from adapters.chat_format import conversation, render
from adapters.execution_plan import ExecutionPlan
from trainer.objective import row_loss
from trainer.packing import PackedBatch
from trainer.qlora import Prepared
from trainer.recall import answer_matches
from trainer.samples import Probe

PROBE_BATCH = 8


@torch.no_grad()
def eval_loss(prepared: Prepared, batches: Sequence[PackedBatch]) -> float:
    """Token-weighted mean loss of the assistant tokens in ``batches``."""
    model = prepared.model
    model.eval()
    total = weight = 0.0
    for row in batches:
        n = row.trained_tokens
        if n == 0:
            continue
        total += float(row_loss(prepared, row)) * n
        weight += n
    return total / weight if weight else float("nan")


@torch.no_grad()
def generate_answers(
    prepared: Prepared,
    conversations: Sequence[Sequence[Mapping[str, Any]]],
    system_prompt: str | None,
    max_new_tokens: int,
) -> list[str]:
    """The model's greedy reply to each conversation (ending with the user's turn), its prompt
    built as chat builds it, in left-padded batches of :data:`PROBE_BATCH`."""
    prepared.model.eval()
    replies: list[str] = []
    for start in range(0, len(conversations), PROBE_BATCH):
        replies += _batch_answers(prepared, conversations[start : start + PROBE_BATCH], system_prompt, max_new_tokens)
    return replies


def _batch_answers(
    prepared: Prepared,
    conversations: Sequence[Sequence[Mapping[str, Any]]],
    system_prompt: str | None,
    max_new_tokens: int,
) -> list[str]:
    tokenizer: Any = prepared.tokenizer
    prompts = [render(tokenizer, conversation(c, system_prompt), add_generation_prompt=True) for c in conversations]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        encoded = tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    encoded = {k: v.to(prepared.device) for k, v in encoded.items()}
    eos = sorted(prepared.eos_token_ids) or tokenizer.eos_token_id
    with prepared.precision():
        output = prepared.model.generate(
            **encoded,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = output[:, encoded["input_ids"].shape[1] :]
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in new]


def probe_recall(
    prepared: Prepared, probes: Sequence[Probe], system_prompt: str | None, max_new_tokens: int = 48
) -> tuple[float, list[dict[str, object]]]:
    """(share of probes answered correctly, per-probe ``{question, expect, answer, correct}``)."""
    questions = [[{"role": "user", "content": p.question}] for p in probes]
    answers = generate_answers(prepared, questions, system_prompt, max_new_tokens)
    results: list[dict[str, object]] = [
        {
            "question": probe.question,
            "expect": list(probe.expect),
            "answer": answer,
            "correct": answer_matches(answer, probe.expect),
        }
        for probe, answer in zip(probes, answers, strict=True)
    ]
    if not results:
        return float("nan"), results
    return sum(r["correct"] is True for r in results) / len(results), results


def stored_adapter_recall(
    base_model_dir: Path,
    adapter_dir: Path,
    probes: Sequence[Probe],
    system_prompt: str | None,
    device: str = "cpu",
    plan: ExecutionPlan | None = None,
) -> tuple[float, float, list[dict[str, Any]]]:
    """Probe recall of the base and of the stored adapter in ``adapter_dir`` (see the module docstring)."""
    from peft import PeftModel

    base = load_base(base_model_dir, device, plan=plan)
    model = PeftModel.from_pretrained(base.model, str(adapter_dir))
    prepared = Prepared.wrap(base, model)
    with model.disable_adapter():
        before, _ = probe_recall(prepared, probes, system_prompt)
    after, answers = probe_recall(prepared, probes, system_prompt)
    return before, after, answers
