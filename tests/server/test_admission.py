"""Admission: round-robin across tenants (asserted on ORDER, never on time), the bounded queue's
429 with Retry-After (global and per tenant), and chunked prefill interleaved with decode steps."""

from __future__ import annotations

import asyncio
import queue
import threading

import pytest

from server.engine.admission import Admitter, QueueFull
from server.engine.fair_queue import FairQueue
from server.engine.requests import Finished, GenerationRequest
from server.engine.sampling import SamplingParams
from server.engine.step_loop import Engine
from server.metrics import Metrics
from tests.server.helpers import Collector, decode_steps, fp32_base, prompt_ids, reference, wait_until


def test_fair_queue_round_robin_and_counts() -> None:
    q: FairQueue[str] = FairQueue()
    for i in range(5):
        q.put("burst", f"burst-{i}")
    q.put("single", "single-0")
    q.put(None, "admin-0")
    assert q.qsize() == 7 and q.waiting("burst") == 5 and q.waiting("single") == 1
    order = [q.get_nowait() for _ in range(7)]
    assert order == ["burst-0", "single-0", "admin-0", "burst-1", "burst-2", "burst-3", "burst-4"]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)


def test_one_tenants_burst_does_not_starve_another(tiny_model_dir) -> None:
    """Batch of one: requests run one after another, so finishing order is admission order."""
    engine = Engine(fp32_base(tiny_model_dir), max_batch_size=1)
    engine.start()
    finished: list[str] = []
    lock = threading.Lock()

    def recorder(label: str):
        def emit(event) -> None:
            if isinstance(event, Finished):
                with lock:
                    finished.append(label)

        return emit

    try:
        ids = prompt_ids(engine.base.tokenizer, "Hi")
        blocker = Collector()
        handle = engine.submit(
            GenerationRequest(
                ids, SamplingParams(10_000, temperature=0, ignore_eos=True), None, blocker, tenant="other"
            )
        )
        blocker.wait_started()  # the one slot is busy from here on
        for i in range(6):
            engine.submit(
                GenerationRequest(ids, SamplingParams(2, temperature=0), None, recorder(f"burst-{i}"), tenant="burst")
            )
        engine.submit(
            GenerationRequest(ids, SamplingParams(2, temperature=0), None, recorder("single"), tenant="single")
        )
        assert engine.waiting == 7 and engine.waiting_for("burst") == 6
        handle.cancel()
        assert blocker.wait().reason == "cancelled"
        wait_until(lambda: len(finished) >= 7, "the 7 queued requests to finish")
    finally:
        engine.stop()
    assert finished[:2] == ["burst-0", "single"], finished  # not behind the whole burst
    assert finished[2:] == [f"burst-{i}" for i in range(1, 6)]


def test_bounded_queue_answers_429_with_retry_after(tiny_model_dir) -> None:
    engine = Engine(fp32_base(tiny_model_dir))  # never started: everything stays queued
    admitter = Admitter(engine, Metrics(), max_waiting=3, max_waiting_per_tenant=2)
    params = SamplingParams(4, temperature=0)

    async def scenario() -> list[str]:
        outcomes = []
        for tenant in ("a", "a", "a", "b", "c"):
            try:
                admitter.generate([1, 2, 3], params, None, tenant)
                outcomes.append("queued")
            except QueueFull as exc:  # the chat route answers it with 429 server_busy (integration tests)
                assert exc.retry_after_s == 1
                outcomes.append("tenant-full" if "tenant" in exc.message else "full")
        return outcomes

    assert asyncio.run(scenario()) == ["queued", "queued", "tenant-full", "queued", "full"]


def test_chunked_prefill_matches_plain_peft_and_interleaves_decode(tiny_model_dir) -> None:
    engine = Engine(fp32_base(tiny_model_dir), max_batch_size=4, prefill_chunk=16)
    engine.start()
    tok = engine.base.tokenizer
    long_text = " ".join(f"word{i}" for i in range(120))
    long_ids = prompt_ids(tok, long_text)
    chunks = -(-len(long_ids) // 16)
    assert chunks >= 8
    try:
        running = Collector()
        handle = engine.submit(
            GenerationRequest(
                prompt_ids(tok, "Hi"), SamplingParams(10_000, temperature=0, ignore_eos=True), None, running
            )
        )
        running.wait_started()
        steps_before = decode_steps(engine.metrics)
        long = Collector()
        engine.submit(GenerationRequest(long_ids, SamplingParams(8, temperature=0), None, long))
        result = long.wait()
        steps_during = decode_steps(engine.metrics) - steps_before
        handle.cancel()
        running.wait()
    finally:
        engine.stop()
    # Every chunk but the last is followed by a decode step of the running row; then the long
    # request decodes its 7 more tokens. Unchunked, only those 7-8 steps would be counted.
    assert steps_during >= (chunks - 1) + 7, (steps_during, chunks)
    expected = tok.decode(reference(tiny_model_dir, None, long_ids, 8), skip_special_tokens=True)
    assert result.reason == "length" and long.text == expected


def test_fair_queue_passes_over_tenants_without_room() -> None:
    q: FairQueue[str] = FairQueue()
    q.put("full", "full-0")
    q.put("full", "full-1")
    q.put("other", "other-0")
    no_room_for_full = lambda tenant, item: tenant != "full"  # noqa: E731
    assert q.get_nowait() == "full-0"
    assert q.get(timeout=0, admissible=no_room_for_full) == "other-0"
    with pytest.raises(queue.Empty):
        q.get(timeout=0, admissible=no_room_for_full)
    assert q.qsize() == 1 and q.get_nowait() == "full-1"  # passed over, never dropped


def test_a_tenant_holds_at_most_its_batch_rows(tiny_model_dir) -> None:
    """Cap 1: the tenant's second request waits while its first runs, although the batch has room
    and another tenant's request joins and finishes meanwhile; it starts once the first ends."""
    engine = Engine(fp32_base(tiny_model_dir), max_batch_size=4)
    engine.start()
    try:
        ids = prompt_ids(engine.base.tokenizer, "Hi")
        endless = SamplingParams(10_000, temperature=0, ignore_eos=True)
        first, second, other = Collector(), Collector(), Collector()
        first_handle = engine.submit(GenerationRequest(ids, endless, None, first, tenant="greedy", max_running=1))
        first.wait_started()
        second_handle = engine.submit(GenerationRequest(ids, endless, None, second, tenant="greedy", max_running=1))
        engine.submit(
            GenerationRequest(
                ids, SamplingParams(8, temperature=0, ignore_eos=True), None, other, tenant="other", max_running=1
            )
        )
        assert other.wait().completion_tokens == 8
        assert second.pieces == [] and engine.waiting_for("greedy") == 1 and engine.running == 1
        first_handle.cancel()
        first.wait()
        second.wait_started()
        second_handle.cancel()
        second.wait()
    finally:
        engine.stop()
