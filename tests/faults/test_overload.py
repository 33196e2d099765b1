"""Load faults on one real server with a small batch and queue (``SWAPLORA_MAX_BATCH_SIZE`` 4,
``SWAPLORA_MAX_WAITING`` 2): a disconnect storm (most streams of a full batch drop mid-stream)
and an overload (far more concurrent requests than the batch and queue hold).
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.faults.conftest import Launch, Stream, chat_body, chat_works, poll
from tests.integration.conftest import Server, assert_openai_error, auth, metric
from tests.integration.helpers import new_tenant

pytestmark = [pytest.mark.faults, pytest.mark.integration]

BATCH, WAITING = 4, 2
RUNNING = "swaplora_running_requests"
RECOVERY_S = 30.0
"""Bound on the running batch falling back after a storm (a hang, not a slow step, reaches it)."""


@pytest.fixture(scope="module")
def server(launch: Launch) -> Server:
    # One tenant may fill the whole batch here (by default it holds at most three quarters of it).
    return launch(MAX_BATCH_SIZE=str(BATCH), MAX_WAITING=str(WAITING), MAX_RUNNING_PER_TENANT=str(BATCH))


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return new_tenant(server, "acme")


def running(srv: Server) -> float:
    response = httpx.get(f"{srv.url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return metric(response.text, RUNNING)


def test_disconnect_storm_frees_the_batch(server: Server, key: str) -> None:
    max_tokens = 128
    baseline = poll(lambda: (value := running(server)) == 0 and [value], 60, "an idle batch")[0]
    streams: list[Stream] = []
    try:
        for _ in range(BATCH):  # one at a time: the queue holds only two
            streams.append(Stream(server, key, max_tokens))
            streams[-1].first_token()
        poll(lambda: running(server) == BATCH, 30, "a full batch")
        stayer, leavers = streams[-1], streams[:-1]  # the last one opened has the most left to do
        with ThreadPoolExecutor(1) as pool:
            rest = pool.submit(stayer.rest)
            dropped = time.monotonic()
            for stream in leavers:
                stream.close()
            poll(lambda: running(server) <= baseline + 1, RECOVERY_S, "the dropped rows leaving the batch")
            freed_s = time.monotonic() - dropped
            rest.result(timeout=300)
        stayer.assert_complete(max_tokens)
        poll(lambda: running(server) == baseline, RECOVERY_S, f"{RUNNING} back to {baseline:.0f}")
        back_s = time.monotonic() - dropped
    finally:
        for stream in streams:
            stream.close()
    print(
        f"\n[storm] {len(leavers)} of {BATCH} streams dropped: {RUNNING} fell to baseline+1 in {freed_s:.2f} s, "
        f"to baseline {back_s:.2f} s after the drop; the stream that stayed got its {max_tokens} tokens and [DONE]"
    )


def test_overload_is_refused_with_429_and_no_5xx(server: Server, key: str) -> None:
    clients, max_tokens = 24, 16
    start = threading.Barrier(clients)

    def one(_: int) -> tuple[httpx.Response, float]:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            start.wait()
            began = time.monotonic()
            response = client.post("/v1/chat/completions", json=chat_body(max_tokens, False), headers=auth(key))
            return response, time.monotonic() - began

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(clients)))
    statuses = sorted(response.status_code for response, _ in results)
    assert set(statuses) <= {200, 429}, statuses
    refusals = [(response, took) for response, took in results if response.status_code == 429]
    for response, _ in refusals:
        assert_openai_error(response, 429, code="server_busy")
        assert int(response.headers["Retry-After"]) >= 1
    for response, _ in results:
        if response.status_code == 200:
            assert response.json()["usage"]["completion_tokens"] == max_tokens
    assert len(refusals) >= clients // 2, statuses
    latencies = sorted(took for _, took in refusals)
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    print(
        f"\n[overload] {clients} concurrent requests (batch {BATCH}, queue {WAITING}): "
        f"{clients - len(refusals)} served, {len(refusals)} refused with 429; refusal latency "
        f"median {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"
    )
    assert p95 < 5.0
    poll(lambda: running(server) == 0, RECOVERY_S, f"{RUNNING} back to 0")
    chat_works(server, key)
