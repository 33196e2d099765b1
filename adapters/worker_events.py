"""The events a training worker reports, one JSON object per line on its stdout.

Contract:

- One frozen dataclass per event ``type`` of docs/training-jobs.md: :class:`StatusEvent`
  (``status``), :class:`ProgressEvent` (``progress``), :class:`EvalEvent` (``eval``),
  :class:`MessageEvent` (``message``), :class:`SucceededEvent` (``succeeded``) and
  :class:`FailedEvent` (``failed``); :data:`WorkerEvent` is their union and each class's
  ``type`` (a class variable) is its ``type`` on the wire.
- ``event.to_dict()`` is the event's JSON object (``type`` first, then every field; optional
  fields left None are omitted); the worker builds its events with these classes and writes
  that object.
- :func:`parse_event` reads one line (bytes or str) and :func:`event_from_dict` one decoded
  object; both return the typed event, or None for a malformed one: not JSON, not an object, no
  ``type`` or an unknown one, or a ``succeeded`` event without a ``fine_tuned_model`` string.
  They never raise: a worker's output is trusted for nothing. A field of the wrong type is
  dropped (None, or the documented default: ``status`` ``unknown``, ``level`` ``info``, a
  ``failed`` event's ``code`` ``training_failed`` and message ``Training failed.``), never coerced,
  and a field the class does not know is ignored. Numbers exclude booleans; counts
  (``step``, ``total_steps``, ``trained_tokens``) are ints. ``Class.from_fields(mapping)`` builds
  one event type the same way (the worker makes ``progress`` events of the training loop's dict).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Self

Stage = Literal["before", "after"]


class _Event:
    type: ClassVar[str]

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Self:
        """The event made of ``data``'s fields that pass their type test; other keys are ignored.
        ``TypeError`` if a field without a default is missing or mistyped."""
        return cls(
            **{
                f.name: data[f.name]
                for f in fields(cls)  # type: ignore[arg-type]
                if f.name in data and _CHECKS[f.name](data[f.name])
            }
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None or f.default is not None:
                data[f.name] = value
        return data


@dataclass(frozen=True)
class StatusEvent(_Event):
    """The job entered a stage: ``validating_files``, then ``running``."""

    type: ClassVar[str] = "status"
    status: str = "unknown"
    message: str | None = None


@dataclass(frozen=True)
class ProgressEvent(_Event):
    """One optimizer step done (the worker sends at most about one a second, and the last)."""

    type: ClassVar[str] = "progress"
    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    train_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    elapsed_s: float | None = None
    """Seconds since the training loop started."""


@dataclass(frozen=True)
class EvalEvent(_Event):
    """Held-out measures before and after training: loss and probe recall (supervised), or DPO's
    loss, preference accuracy and reward margin (a DPO job)."""

    type: ClassVar[str] = "eval"
    stage: Stage = "after"
    eval_loss: float | None = None
    """Per answer token (supervised), or DPO's loss per held-out pair."""
    probe_recall: float | None = None
    """Share of the probe questions answered right (0..1)."""
    preference_accuracy: float | None = None
    """DPO: share of held-out pairs whose reward margin is above 0 (0..1)."""
    reward_margin: float | None = None
    """DPO: mean reward margin over the held-out pairs, ``beta * ((pi_c - ref_c) - (pi_r - ref_r))``."""


@dataclass(frozen=True)
class MessageEvent(_Event):
    """A line for the job's owner."""

    type: ClassVar[str] = "message"
    message: str | None = None
    level: str = "info"
    """``info``, ``warning`` or ``error`` (the server maps ``warning`` to ``warn``)."""


@dataclass(frozen=True)
class SucceededEvent(_Event):
    """The adapter version is published; the last event of a successful job."""

    type: ClassVar[str] = "succeeded"
    fine_tuned_model: str
    """The published ``tenant/name@version``."""
    trained_tokens: int | None = None
    metrics: dict[str, Any] | None = None


@dataclass(frozen=True)
class FailedEvent(_Event):
    """The job failed and published nothing; the last event of a failed job."""

    type: ClassVar[str] = "failed"
    code: str = "training_failed"
    """A stable code (docs/training-jobs.md lists them)."""
    message: str = "Training failed."


WorkerEvent = StatusEvent | ProgressEvent | EvalEvent | MessageEvent | SucceededEvent | FailedEvent
Outcome = SucceededEvent | FailedEvent
"""The event that ends a job."""

_CLASSES: dict[str, type[WorkerEvent]] = {
    cls.type: cls for cls in (StatusEvent, ProgressEvent, EvalEvent, MessageEvent, SucceededEvent, FailedEvent)
}


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_text(value: object) -> bool:
    return isinstance(value, str)


_CHECKS: dict[str, Any] = {
    "step": _is_int,
    "total_steps": _is_int,
    "trained_tokens": _is_int,
    "epoch": _is_number,
    "train_loss": _is_number,
    "learning_rate": _is_number,
    "tokens_per_second": _is_number,
    "elapsed_s": _is_number,
    "eval_loss": _is_number,
    "probe_recall": _is_number,
    "preference_accuracy": _is_number,
    "reward_margin": _is_number,
    "status": _is_text,
    "message": _is_text,
    "level": _is_text,
    "code": _is_text,
    "fine_tuned_model": _is_text,
    "stage": lambda value: value in ("before", "after"),
    "metrics": lambda value: isinstance(value, dict),
}
"""Each field's type test (a field that fails it takes its default)."""


def event_from_dict(data: object) -> WorkerEvent | None:
    """The typed event ``data`` (a decoded JSON value) describes, or None if it is malformed."""
    kind = data.get("type") if isinstance(data, dict) else None
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None or not isinstance(data, dict):
        return None
    try:
        return cls.from_fields(data)
    except TypeError:  # a succeeded event without a fine_tuned_model string
        return None


def parse_event(line: bytes | str) -> WorkerEvent | None:
    """The typed event on one line of a worker's stdout, or None if the line is not one."""
    try:
        return event_from_dict(json.loads(line))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
