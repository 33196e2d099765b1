"""A trainer worker's event (:mod:`adapters.worker_events`), described as an OpenAI fine-tuning job event.

Contract: :func:`describe_event` turns one typed worker event into the message, level (``info``,
``warn``, ``error``), type (``message`` or ``metrics``) and data of the event the job store
records, or None for the final ``failed`` event (the runner records it with the job's state
change). Parsing (and dropping malformed lines or mistyped fields) is
:func:`adapters.worker_events.parse_event`'s; texts are cut to 2000 characters here.
:func:`progress_fields` is what a ``progress`` event changes on the job itself (``step``,
``total_steps``, ``estimated_finish``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from adapters.worker_events import (
    EvalEvent,
    MessageEvent,
    ProgressEvent,
    StatusEvent,
    SucceededEvent,
    WorkerEvent,
)

_LEVELS = {"debug": "info", "info": "info", "warning": "warn", "warn": "warn", "error": "error"}


@dataclass(frozen=True)
class DescribedEvent:
    message: str
    level: str
    type: str
    data: dict[str, Any] | None


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _text(value: str | None, default: str) -> str:
    return value[:2000] if value else default


def _data(event: WorkerEvent) -> dict[str, Any]:
    return {k: v for k, v in event.to_dict().items() if k != "type"}


def describe_event(event: WorkerEvent) -> DescribedEvent | None:
    if isinstance(event, StatusEvent):
        status = _text(event.status, "unknown")
        return DescribedEvent(_text(event.message, f"Trainer status: {status}."), "info", "message", _data(event))
    if isinstance(event, ProgressEvent):
        message = f"Step {event.step}/{event.total_steps}: training loss={_number(event.train_loss, '.4f')}"
        return DescribedEvent(message, "info", "metrics", _data(event))
    if isinstance(event, EvalEvent):
        return DescribedEvent(_evaluation(event), "info", "metrics", _data(event))
    if isinstance(event, MessageEvent):
        level = _LEVELS.get(event.level, "info")
        return DescribedEvent(_text(event.message, "(empty message)"), level, "message", None)
    if isinstance(event, SucceededEvent):
        return DescribedEvent(
            f"New fine-tuned model created: {_text(event.fine_tuned_model, '(unnamed)')}",
            "info",
            "message",
            event.metrics,
        )
    return None  # a FailedEvent: the runner records it with the job's state change


def _evaluation(event: EvalEvent) -> str:
    """``Evaluation before training: ...`` with the measures the event has (a DPO job's have
    preference accuracy and reward margin, a supervised job's probe recall)."""
    if event.preference_accuracy is not None or event.reward_margin is not None:
        return (
            f"Evaluation {event.stage} training: DPO loss={_number(event.eval_loss, '.4f')}, "
            f"preference accuracy={_number(event.preference_accuracy, '.0%')}, "
            f"reward margin={_number(event.reward_margin, '.3f')}"
        )
    return (
        f"Evaluation {event.stage} training: eval loss={_number(event.eval_loss, '.4f')}, "
        f"probe recall={_number(event.probe_recall, '.0%')}"
    )


def progress_fields(event: ProgressEvent) -> dict[str, Any]:
    """The job fields a ``progress`` event sets: step, total steps and an estimated finish time."""
    step, total, elapsed = event.step, event.total_steps, event.elapsed_s
    fields: dict[str, Any] = {"step": step, "total_steps": total}
    if step is not None and total is not None and elapsed is not None and 0 < step <= total:
        fields["estimated_finish"] = int(time.time() + elapsed / step * (total - step))
    return fields
