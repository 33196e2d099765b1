"""SIGTERM drains a real server (:mod:`server.drain`): streams in flight finish, new requests and
``/ready`` get 503 with ``Retry-After`` on a socket that stays open, a running training job ends
``failed`` with ``server_restarted``, and the process exits 0 once drained or at the deadline;
a second signal exits at once. Every test signals its own server.
"""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.faults.conftest import Launch, chat_body, db_row, opened, poll, running_job, worker_pid
from tests.integration.conftest import Server, assert_openai_error, auth
from tests.integration.helpers import LONG, new_tenant, pid_alive, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

MARGIN_S = 30.0
"""Exit bound beyond ``drain_seconds``: worker stop, lifespan shutdown, interpreter exit on two
busy cores (only a hang reaches it)."""


def refused(response: httpx.Response) -> None:
    """A drain refusal: 503, OpenAI's shape, code ``server_shutting_down``, ``Retry-After``."""
    assert_openai_error(response, 503, code="server_shutting_down")
    assert int(response.headers["Retry-After"]) > 0


def draining(srv: Server) -> httpx.Response:
    """``/ready`` once it answers 503 (the signal is handled between two loop turns); a refused
    connection fails the test: the socket must stay open during the drain."""

    def ready() -> httpx.Response | None:
        response = httpx.get(f"{srv.url}/ready", timeout=30)
        return response if response.status_code == 503 else None

    return poll(ready, 10, "/ready answering 503 after SIGTERM")


def exit_after(srv: Server, started: float, bound: float, expected: int = 0) -> float:
    """Seconds from ``started`` to the process's exit, which must have status ``expected``."""
    try:
        status = srv.process.wait(timeout=bound)
    except Exception:
        pytest.fail(f"still running {bound:.0f} s after SIGTERM; log:\n{srv.log()}")
    elapsed = time.monotonic() - started
    assert status == expected, f"exit status {status}; log:\n{srv.log()}"
    return elapsed


def test_sigterm_drains_in_flight_work_and_fails_the_running_job(launch: Launch) -> None:
    drain_s, max_tokens = 60.0, 32
    srv = launch(DRAIN_SECONDS=str(drain_s))
    key = new_tenant(srv, "acme")
    job_id = running_job(srv, key, LONG, "drained")
    wait_for(srv, key, job_id, lambda job: job["status"] == "running", "running")
    pid = poll(lambda: worker_pid(srv.data, job_id), 60, "the worker's pid")
    assert pid_alive(pid)

    with opened(srv, key, max_tokens) as stream:
        stream.first_token()
        started = time.monotonic()
        srv.process.send_signal(signal.SIGTERM)
        refused(draining(srv))
        refused(httpx.post(f"{srv.api_url}/chat/completions", json=chat_body(4, False), headers=auth(key), timeout=30))
        refused_after = time.monotonic() - started
        stream.rest()
    stream.assert_complete(max_tokens)
    finished_after = time.monotonic() - started

    exit_s = exit_after(srv, started, drain_s + MARGIN_S)
    print(
        f"\n[drain] refusing after {refused_after:.2f} s, stream in flight finished after {finished_after:.2f} s, "
        f"exit 0 after {exit_s:.2f} s (drain_seconds {drain_s:.0f})"
    )
    job = db_row(srv.data, "SELECT status, error_code FROM jobs WHERE id = ?", job_id)
    assert job == ("failed", "server_restarted"), job
    assert not pid_alive(pid), "the training worker outlived the drain"
    assert "drained in" in srv.log()


def test_drain_ends_at_the_deadline(launch: Launch) -> None:
    drain_s = 3.0
    srv = launch(DRAIN_SECONDS=str(drain_s))
    key = new_tenant(srv, "acme")
    with opened(srv, key, 3000) as stream:  # far more than the drain leaves it
        stream.first_token()
        started = time.monotonic()
        srv.process.send_signal(signal.SIGTERM)
        refused(draining(srv))
        exit_s = exit_after(srv, started, drain_s + MARGIN_S)
        try:
            stream.rest()
        except httpx.HTTPError:
            pass  # cut mid-stream: the server is gone
    print(
        f"\n[drain deadline] exit 0 after {exit_s:.2f} s (drain_seconds {drain_s:.0f}); the long stream got "
        f"{len(stream.events)} events, [DONE]: {'[DONE]' in stream.events}"
    )
    assert exit_s >= drain_s - 0.5, "exited before the deadline with a stream in flight"
    assert "[DONE]" not in stream.events


def test_second_signal_exits_at_once(launch: Launch) -> None:
    srv = launch(DRAIN_SECONDS="120")
    key = new_tenant(srv, "acme")
    with opened(srv, key, 3000) as stream:
        stream.first_token()
        srv.process.send_signal(signal.SIGTERM)
        draining(srv)
        started = time.monotonic()
        srv.process.send_signal(signal.SIGINT)
        exit_s = exit_after(srv, started, MARGIN_S, expected=128 + signal.SIGINT)
    print(f"\n[drain] second signal: exit {128 + signal.SIGINT} after {exit_s:.2f} s (drain_seconds 120)")
