"""The rollouts room on a real SQLite file: the served log's buffer and retention, feedback, the
scoreboard's statistics (Wilson interval against known values, nearest-rank percentiles)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from server.comparisons import ComparisonStore
from server.rollouts.feedback import FeedbackStore
from server.rollouts.scoreboard import percentiles, scoreboard, wilson_interval
from server.rollouts.served_log import MAX_CONVERSATION_CHARS, Served, ServedLog


def served(i: int, version: int | None = 1, latency: float = 100.0, **extra: object) -> Served:
    model = "acme/support" + (f"@{version}" if version else "")
    fields = dict(
        id=f"chatcmpl-{i}",
        tenant="acme",
        adapter="acme/support",
        version=version,
        model=model,
        created_at=time.time(),
        ttft_ms=latency / 4,
        latency_ms=latency,
        prompt_tokens=10,
        completion_tokens=5,
        finish_reason="stop",
    )
    return Served(**{**fields, **extra})  # type: ignore[arg-type]


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 5)
    assert low == 0.0 and high == pytest.approx(0.4345, abs=1e-4)


def test_percentiles_are_nearest_rank() -> None:
    assert percentiles(list(range(1, 101))) == {"p50": 50, "p90": 90, "p99": 99}
    assert percentiles([]) is None


def test_the_served_log_buffers_flushes_and_sweeps(tmp_path: Path) -> None:
    log = ServedLog(tmp_path / "db.sqlite")
    log.record(served(1))
    assert log.get("chatcmpl-1") is not None  # found while still in the buffer
    assert log.flush() == 1 and log.get("chatcmpl-1") == served(1).__class__(**{**log.get("chatcmpl-1").__dict__})
    log.record(served(2, conversation="x" * (MAX_CONVERSATION_CHARS + 1)))
    assert log.get("chatcmpl-2").conversation is None  # too long: not stored at all, never cut
    log.record(served(3, created_at=time.time() - 40 * 86400))
    log.flush()
    FeedbackStore(tmp_path / "db.sqlite").rate(log.get("chatcmpl-3"), "up", None)
    assert log.sweep(30) == 1 and log.get("chatcmpl-3") is None and log.get("chatcmpl-1") is not None


def test_scoreboard_per_version(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    log, feedback, votes = ServedLog(db), FeedbackStore(db), ComparisonStore(db)
    for i in range(10):
        log.record(served(i, 1, latency=100 + i))
    for i in range(10, 14):
        log.record(served(i, 2, latency=300))
    log.flush()
    for i in range(8):
        feedback.rate(log.get(f"chatcmpl-{i}"), "up" if i < 6 else "down", None)
    feedback.rate(log.get("chatcmpl-0"), "down", None)  # a changed mind: 5 up, 3 down
    votes.record("acme", "acme/support@2", "acme/support@1", "q", "left", True)
    votes.record("acme", "acme/support@1", "acme/support@2", "q", "tie", True)
    votes.record("globex", "acme/support@1", "acme/support@2", "q", "left", True)  # another tenant's vote
    board = {entry["version"]: entry for entry in scoreboard(log, feedback, votes, "acme", "support")}
    one, two = board[1], board[2]
    assert one["requests"] == 10 and two["requests"] == 4
    assert (one["thumbs_up"], one["thumbs_down"]) == (5, 3) and one["approval"] == pytest.approx(5 / 8)
    assert one["approval_interval"] == pytest.approx(list(wilson_interval(5, 8)))
    assert two["thumbs_up"] == 0 and two["approval"] is None and two["approval_interval"] is None
    assert one["compare"] == {"wins": 0, "votes": 2, "win_rate": 0.0}
    assert two["compare"] == {"wins": 1, "votes": 2, "win_rate": 0.5}
    assert one["latency_ms"]["p50"] == 104 and two["latency_ms"]["p99"] == 300 and one["ttft_ms"]["p50"] == 26


def test_rated_conversations_join_texts(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    log, feedback = ServedLog(db), FeedbackStore(db)
    text = json.dumps({"messages": [{"role": "user", "content": "hi"}], "answer": "hello"})
    log.record(served(1, conversation=text))
    log.record(served(2))
    log.flush()
    feedback.rate(log.get("chatcmpl-1"), "up", "nice")
    feedback.rate(log.get("chatcmpl-2"), "down", None)
    assert feedback.rated_conversations("acme", 10) == [(text, "up")]  # no text, no export line
