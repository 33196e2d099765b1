"""A slow sender cannot hold a connection: a body that pauses longer than
``body_idle_timeout_s``, or trickles in under ``min_body_bytes_per_s``, gets 408 in OpenAI's
shape. Real uvicorn on a real port (in-process test clients deliver bodies at once) with the
management routes; the client is a raw socket that sends as slowly as it likes."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette

from server.errors import install_error_handlers
from server.routes import tenants as tenant_routes
from server.settings import Settings
from tests.server.helpers import ADMIN_KEY, real_services, wait_until

IDLE_S = 0.5
MIN_RATE = 200


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    settings = Settings(
        data=tmp_path_factory.mktemp("slow"),
        admin_key=ADMIN_KEY,
        body_idle_timeout_s=IDLE_S,
        min_body_bytes_per_s=MIN_RATE,
    )
    app = Starlette(routes=tenant_routes.routes)
    install_error_handlers(app)
    app.state.services = real_services(settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "uvicorn to start")
    assert server.started, "uvicorn stopped before it started serving"
    yield free
    server.should_exit = True
    thread.join(10)


def send_slowly(port: int, body: bytes, pieces: list[tuple[int, float]]) -> tuple[int, dict, float]:
    """POST /v1/tenants with ``body`` sent as ``(bytes, then wait seconds)`` pieces; (status, json, seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        started, sent = time.monotonic(), 0
        try:
            for size, wait in pieces:
                sock.sendall(body[sent : sent + size])
                sent += size
                if select.select([sock], [], [], wait)[0]:
                    break  # the server answered before the body was complete
        except OSError:
            pass  # the server answered and closed while we were still sending
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.endswith(b"}"):
                break
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload), time.monotonic() - started


def test_a_body_that_stalls_is_408(port: int) -> None:
    body = json.dumps({"id": "stalled"}).encode()
    status, error, seconds = send_slowly(port, body, [(5, 3 * IDLE_S)])
    assert status == 408 and error["error"]["code"] == "request_timeout", error
    assert seconds < 10


def test_a_body_that_trickles_is_408(port: int) -> None:
    body = json.dumps({"id": "trickled", "pad": "x" * 400}).encode()
    status, error, _ = send_slowly(port, body, [(1, IDLE_S / 2)] * len(body))  # ~4 bytes/s
    assert status == 408 and error["error"]["code"] == "request_timeout", error


def test_a_body_at_a_fair_pace_is_read(port: int) -> None:
    body = json.dumps({"id": "steady"}).encode()
    status, created, _ = send_slowly(port, body, [(4, IDLE_S / 5)] * (len(body) // 4 + 1))
    assert status == 201 and created["id"] == "steady", created
