"""The worker's events: typed on both sides, and a worker's garbage never raises."""

from __future__ import annotations

import json

import pytest

from adapters.worker_events import (
    EvalEvent,
    FailedEvent,
    MessageEvent,
    ProgressEvent,
    StatusEvent,
    SucceededEvent,
    WorkerEvent,
    event_from_dict,
    parse_event,
)

EVENTS: list[WorkerEvent] = [
    StatusEvent("validating_files", "Reading 1 file(s)."),
    MessageEvent("60 packed rows", "info"),
    EvalEvent("before", 2.91, 0.05),
    ProgressEvent(
        step=3, total_steps=120, epoch=0.1, train_loss=2.4, learning_rate=2e-4, tokens_per_second=410.0, elapsed_s=12.5
    ),
    SucceededEvent("acme/handbook@3", 51234, {"eval_loss_after": 0.8}),
    FailedEvent("invalid_training_file", "handbook.md: no text"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_every_event_round_trips_through_a_line(event: WorkerEvent) -> None:
    line = json.dumps(event.to_dict())
    assert json.loads(line)["type"] == event.type and next(iter(event.to_dict())) == "type"
    assert parse_event(line) == event
    assert parse_event(line.encode() + b"\n") == event


def test_the_wire_form_is_the_documented_one() -> None:
    assert FailedEvent("cancelled", "stopped").to_dict() == {
        "type": "failed",
        "code": "cancelled",
        "message": "stopped",
    }
    assert ProgressEvent(step=1, total_steps=2).to_dict() == {"type": "progress", "step": 1, "total_steps": 2}
    assert StatusEvent("running").to_dict() == {"type": "status", "status": "running"}


@pytest.mark.parametrize(
    "line",
    [
        b"not json at all",
        b"[1, 2, 3]",
        b'{"no": "type"}',
        b'{"type": 7}',
        b'{"type": "mystery"}',
        b"\xff\xfe",
        b'{"type": "succeeded", "trained_tokens": 3}',
        b'{"type": "succeeded", "fine_tuned_model": 5}',
        b"",
        b"[" * 100000,
    ],
)
def test_malformed_lines_are_none(line: bytes) -> None:
    assert parse_event(line) is None


def test_mistyped_fields_are_dropped_never_coerced() -> None:
    done = event_from_dict(
        {"type": "succeeded", "fine_tuned_model": "acme/x@1", "trained_tokens": "many", "metrics": [1]}
    )
    assert done == SucceededEvent("acme/x@1", None, None)
    progress = event_from_dict(
        {"type": "progress", "step": True, "total_steps": 3.0, "train_loss": "1", "elapsed_s": 2}
    )
    assert progress == ProgressEvent(elapsed_s=2)
    assert event_from_dict({"type": "failed", "code": 1}) == FailedEvent("training_failed", "Training failed.")
    assert event_from_dict({"type": "eval", "stage": "during", "eval_loss": None}) == EvalEvent("after", None, None)
    assert event_from_dict({"type": "status", "status": None, "extra": 1}) == StatusEvent("unknown", None)


def test_from_fields_ignores_keys_it_does_not_know() -> None:
    values = {"step": 2, "total_steps": 2, "train_loss": 0.5, "grad_norm": 1.0}
    assert ProgressEvent.from_fields(values) == ProgressEvent(step=2, total_steps=2, train_loss=0.5)
    with pytest.raises(TypeError):
        SucceededEvent.from_fields({"trained_tokens": 1})
