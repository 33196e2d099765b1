"""A trainer worker's JSON-lines event, described as an OpenAI fine-tuning job event.

Contract: :func:`describe_event` turns one event of docs/training-jobs.md into the message,
level (``info``, ``warn``, ``error``), type (``message`` or ``metrics``) and data of the event the
job store records, or None for events that are not recorded as such (the final ``failed``, which
the runner records with the job's state change, and unknown types). Missing or mistyped fields
never raise: a worker's output is trusted for nothing. :func:`progress_fields` is what a
``progress`` event changes on the job itself (``step``, ``total_steps``, ``estimated_finish``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

_LEVELS = {"debug": "info", "info": "info", "warning": "warn", "warn": "warn", "error": "error"}


@dataclass(frozen=True)
class DescribedEvent:
    message: str
    level: str
    type: str
    data: dict[str, Any] | None


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) and not isinstance(value, bool) else "n/a"


def _text(value: Any, default: str) -> str:
    return value[:2000] if isinstance(value, str) and value else default


def describe_event(event: dict[str, Any]) -> DescribedEvent | None:
    kind = event.get("type")
    data = {k: v for k, v in event.items() if k != "type"}
    if kind == "status":
        status = _text(event.get("status"), "unknown")
        return DescribedEvent(_text(event.get("message"), f"Trainer status: {status}."), "info", "message", data)
    if kind == "progress":
        message = (f"Step {event.get('step')}/{event.get('total_steps')}: "
                   f"training loss={_number(event.get('train_loss'), '.4f')}")
        return DescribedEvent(message, "info", "metrics", data)
    if kind == "eval":
        stage = "before" if event.get("stage") == "before" else "after"
        message = (f"Evaluation {stage} training: eval loss={_number(event.get('eval_loss'), '.4f')}, "
                   f"probe recall={_number(event.get('probe_recall'), '.0%')}")
        return DescribedEvent(message, "info", "metrics", data)
    if kind == "message":
        level = _LEVELS.get(str(event.get("level")), "info")
        return DescribedEvent(_text(event.get("message"), "(empty message)"), level, "message", None)
    if kind == "succeeded":
        model = _text(event.get("fine_tuned_model"), "(unnamed)")
        metrics = event.get("metrics")
        return DescribedEvent(f"New fine-tuned model created: {model}", "info", "message",
                              metrics if isinstance(metrics, dict) else None)
    return None


def progress_fields(event: dict[str, Any]) -> dict[str, Any]:
    """The job fields a ``progress`` event sets: step, total steps and an estimated finish time."""
    step, total, elapsed = event.get("step"), event.get("total_steps"), event.get("elapsed_s")
    fields: dict[str, Any] = {
        "step": step if type(step) is int else None,
        "total_steps": total if type(total) is int else None,
    }
    if type(step) is int and type(total) is int and isinstance(elapsed, int | float) and 0 < step <= total:
        fields["estimated_finish"] = int(time.time() + elapsed / step * (total - step))
    return fields
