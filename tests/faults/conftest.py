"""Helpers of the fault suite: servers a test may kill, raw SSE streams, polling with a bound.

Each test module that kills or signals a server starts its own (``launch``), on its own data
directory, with the launch helpers of :mod:`tests.integration.conftest`; every server a module
started is SIGKILLed at its end if it still runs. Nothing is mocked. Tests print what they
measure (``pytest -m faults -s`` shows it).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.integration.conftest import Server, auth, pytest_runtest_makereport, start_server  # noqa: F401
from tests.integration.helpers import DOC

T = TypeVar("T")
Launch = Callable[..., Server]


@pytest.fixture(scope="module")
def launch(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launch]:
    """``launch(data=None, **settings)``: a ready server (``settings`` are ``SWAPLORA_*`` values);
    ``data`` reuses a directory (a restart). Whatever still runs at the module's end is killed."""
    started: list[Server] = []

    def _launch(data: Path | None = None, admin_key: str | None = None, **settings: str) -> Server:
        srv = start_server(
            embedded_model_dir,
            data or tmp_path_factory.mktemp("faults-data"),
            admin_key or secrets.token_hex(16),
            "--no-ui",
            **settings,
        )
        started.append(srv)
        return srv

    yield _launch
    for srv in started:
        if srv.process.poll() is None:
            srv.process.kill()
            srv.process.wait(timeout=60)


def poll(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.05) -> T:
    """The first truthy value of ``check()``; fails the test if none comes within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def chat_body(max_tokens: int, stream: bool, prompt: str = "Tell me a long story about a lighthouse.") -> dict:
    """A greedy request that generates exactly ``max_tokens`` tokens (``ignore_eos``)."""
    return {
        "model": "base",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": stream,
    }


class Stream:
    """One streamed chat completion read event by event over raw HTTP."""

    def __init__(self, srv: Server, key: str, max_tokens: int) -> None:
        self.client = httpx.Client(base_url=srv.url, timeout=300)
        self._context = self.client.stream(
            "POST", "/v1/chat/completions", json=chat_body(max_tokens, True), headers=auth(key)
        )
        self.response = self._context.__enter__()
        assert self.response.status_code == 200, self.response.read()
        self._lines = self.response.iter_lines()
        self.events: list[Any] = []
        """Parsed ``data:`` payloads so far; ``"[DONE]"`` stays a string."""

    def next(self) -> Any:
        """The next ``data:`` payload (None once the stream has ended)."""
        for line in self._lines:
            if line.startswith("data: "):
                data = line[len("data: ") :]
                event = data if data == "[DONE]" else json.loads(data)
                self.events.append(event)
                return event
        return None

    def first_token(self) -> None:
        """Read up to the first chunk with text (the request is then decoding)."""
        while True:
            event = self.next()
            assert isinstance(event, dict) and "error" not in event, event
            if event["choices"][0]["delta"].get("content"):
                return

    def rest(self) -> list[Any]:
        """Read to the end; every event of the stream."""
        while self.next() is not None:
            pass
        return self.events

    def close(self) -> None:
        """Drop the connection mid-stream, as a client that goes away."""
        self._context.__exit__(None, None, None)
        self.client.close()

    def assert_complete(self, max_tokens: int) -> None:
        """Ended normally: ``finish_reason`` ``length``, every token, then ``[DONE]``."""
        events = self.events
        assert events and events[-1] == "[DONE]", events[-3:]
        chunks = [e for e in events[:-1] if isinstance(e, dict)]
        assert all("error" not in e for e in chunks), chunks
        assert chunks[-1]["choices"][0]["finish_reason"] == "length", chunks[-1]
        assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) >= max_tokens // 2, len(chunks)


@contextmanager
def opened(srv: Server, key: str, max_tokens: int) -> Iterator[Stream]:
    stream = Stream(srv, key, max_tokens)
    try:
        yield stream
    finally:
        stream.close()


def running_job(srv: Server, key: str, hyperparameters: dict[str, Any], suffix: str) -> str:
    """A new job on a freshly uploaded one-fact document; its id (the caller waits for a state)."""
    headers = auth(key)
    upload = httpx.post(
        f"{srv.api_url}/files",
        headers=headers,
        data={"purpose": "fine-tune"},
        files={"file": ("bikes.md", DOC, "text/markdown")},
        timeout=300,
    )
    assert upload.status_code == 200, upload.text
    job = httpx.post(
        f"{srv.api_url}/fine_tuning/jobs",
        headers=headers,
        timeout=60,
        json={
            "model": "base",
            "training_file": upload.json()["id"],
            "suffix": suffix,
            "hyperparameters": hyperparameters,
            "seed": 1,
        },
    )
    assert job.status_code == 200, job.text
    return job.json()["id"]


def db_row(data: Path, sql: str, *args: Any) -> tuple | None:
    """One row straight from the server's SQLite database (no server needed)."""
    with sqlite3.connect(data / "swaplora.db") as db:
        return db.execute(sql, args).fetchone()


def worker_pid(data: Path, job_id: str) -> int | None:
    row = db_row(data, "SELECT pid FROM jobs WHERE id = ?", job_id)
    return row[0] if row else None


def visible_versions(srv: Server, key: str) -> dict[str, list[int]]:
    """``{"tenant/name": [versions]}`` as ``GET /v1/adapters`` shows them to ``key``."""
    response = httpx.get(f"{srv.api_url}/adapters", headers=auth(key), timeout=60)
    assert response.status_code == 200, response.text
    return {a["id"]: sorted(v["version"] for v in a["versions"]) for a in response.json()["data"]}


def chat_works(srv: Server, key: str) -> float:
    """A short greedy chat answers 200 with text; returns how long it took."""
    started = time.monotonic()
    response = httpx.post(
        f"{srv.api_url}/chat/completions", json=chat_body(4, False, "Say hello."), headers=auth(key), timeout=300
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"], response.text
    return time.monotonic() - started
