"""Operational endpoints and chat completions against a real server, through the official client.

Greedy decoding (temperature 0) is deterministic for a request that runs alone, so a streamed
answer must equal the non-streamed one character for character, and a stop string must cut the
greedy answer exactly where it first occurs.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.integration.conftest import MAX_TOKENS, PROMPT, Server, auth, greedy, metric, metrics

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------------- health


def test_health_answers(http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_reports_the_base_spec_hash(http: httpx.Client) -> None:
    response = http.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert re.fullmatch(r"[0-9a-f]{64}", body["base_spec_hash"]), body


def test_metrics_count_generated_tokens_after_a_chat(http: httpx.Client, base_answer) -> None:
    text = metrics(http)
    assert "swaplora_generated_tokens" in text
    assert metric(text, "swaplora_generated_tokens_total") >= base_answer.usage.completion_tokens > 0
    assert (
        metric(text, "swaplora_chat_requests_total", 'outcome="length"')
        + metric(text, "swaplora_chat_requests_total", 'outcome="stop"')
        >= 1
    )


# --------------------------------------------------------------------------------- non-stream / stream


def test_non_stream_chat_returns_text_and_usage(base_answer) -> None:
    assert base_answer.object == "chat.completion"
    assert base_answer.model == "base"
    assert len(base_answer.choices) == 1
    choice = base_answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = base_answer.usage
    assert usage.prompt_tokens > 0
    assert 1 <= usage.completion_tokens <= MAX_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_deltas_concatenate_to_the_non_stream_answer(acme: openai.OpenAI, base_answer) -> None:
    chunks = list(greedy(acme, "base", stream=True))
    assert chunks, "the stream was empty"
    assert all(c.object == "chat.completion.chunk" and c.model == "base" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == base_answer.choices[0].message.content
    assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == base_answer.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_stream_include_usage_ends_with_a_usage_chunk(acme: openai.OpenAI, base_answer) -> None:
    chunks = list(greedy(acme, "base", max_tokens=4, stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == base_answer.usage.prompt_tokens
    assert 1 <= last.usage.completion_tokens <= 4
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0] is chunks[-2]


# --------------------------------------------------------------------------------- stop / seed


def test_stop_cuts_the_answer_before_the_stop_string(acme: openai.OpenAI, base_answer) -> None:
    answer = base_answer.choices[0].message.content
    words = answer.split()
    stop = " " + words[len(words) // 2]
    cut = answer.index(stop)
    assert cut > 0
    completion = greedy(acme, "base", stop=[stop])
    assert completion.choices[0].message.content == answer[:cut]
    assert completion.choices[0].finish_reason == "stop"


def test_same_seed_samples_the_same_text(acme: openai.OpenAI) -> None:
    def sample() -> str:
        completion = acme.chat.completions.create(
            model="base",
            messages=[{"role": "user", "content": "Tell me something surprising."}],
            temperature=1,
            seed=5,
            max_tokens=8,
        )
        return completion.choices[0].message.content

    first = sample()
    assert first
    assert sample() == first


# --------------------------------------------------------------------------------- disconnect


def _running(http: httpx.Client) -> float:
    return metric(metrics(http), "swaplora_running_requests")


def _abandoned(text: str) -> float:
    return sum(
        metric(text, "swaplora_chat_requests_total", f'outcome="{outcome}"')
        for outcome in ("disconnected", "cancelled")
    )


def _poll(http: httpx.Client, condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            state = [
                line
                for line in metrics(http).splitlines()
                if line.startswith(("swaplora_running_requests ", "swaplora_chat_requests_total{"))
            ]
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; the server reports:\n" + "\n".join(state))
        time.sleep(0.2)


LONG_ANSWER = {
    "model": "base",
    "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
    "temperature": 0,
    "max_tokens": 2000,
    "ignore_eos": True,
}
"""A request that runs to 2000 tokens whatever the model says (``ignore_eos``), so a test that
abandons it mid-answer never races the model's own end of answer."""


ROW_DROP_S = 120.0
"""Deadline for the server to notice a client left and drop its row: generous for two busy CPU cores
(the row itself would need minutes for its 2000 tokens); only a server that keeps the row hits it."""


def _assert_row_dropped(http: httpx.Client, before: str) -> None:
    """The engine dropped the abandoned row long before its answer could have finished.

    Waits on both signs, each of which the server gives on its own schedule: the running gauge drops
    when the engine drops the row, the outcome counter moves when the request's handler sees the row
    end (for a whole answer, only after the engine's ``cancelled`` event reaches it)."""
    _poll(
        http,
        lambda: _abandoned(metrics(http)) >= _abandoned(before) + 1,
        ROW_DROP_S,
        "the abandoned request to be counted (outcome disconnected or cancelled)",
    )
    _poll(http, lambda: _running(http) == 0, ROW_DROP_S, "swaplora_running_requests to drop to 0 after the disconnect")
    after = metrics(http)
    assert _abandoned(after) >= _abandoned(before) + 1
    generated = metric(after, "swaplora_generated_tokens_total") - metric(before, "swaplora_generated_tokens_total")
    assert generated < 200, f"the engine kept generating after the client left ({generated:.0f} tokens)"


def test_client_disconnect_mid_stream_drops_the_row(
    server: Server, http: httpx.Client, tenant_keys: dict[str, str]
) -> None:
    before = metrics(http)
    chunks = []
    with (
        httpx.Client(base_url=server.url, timeout=120) as own,
        own.stream(
            "POST", "/v1/chat/completions", json={**LONG_ANSWER, "stream": True}, headers=auth(tenant_keys["acme"])
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        # Hold the iterator: a temporary one is closed at `break`, and closing it closes the
        # connection (httpcore), so the client would leave before the row is seen running.
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data:"):
                chunks.append(json.loads(line.removeprefix("data:")))
                if len(chunks) == 3:  # the role chunk and two tokens
                    break
        # Still connected: the row is generating (it streamed two tokens) until the client leaves.
        _poll(http, lambda: _running(http) >= 1, ROW_DROP_S, "the streaming row to run")
    # Both the response and its connection are closed here, mid-answer.
    assert len(chunks) == 3
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    _assert_row_dropped(http, before)


def test_client_disconnect_while_waiting_for_a_whole_answer_drops_the_row(
    server: Server, http: httpx.Client, tenant_keys: dict[str, str]
) -> None:
    before = metrics(http)
    # The client gives up (and closes its connection) once the row is generating.
    with (
        httpx.Client(base_url=server.url, timeout=httpx.Timeout(120, read=1.0)) as own,
        pytest.raises(httpx.ReadTimeout),
    ):
        own.post("/v1/chat/completions", json=LONG_ANSWER, headers=auth(tenant_keys["acme"]))
    _assert_row_dropped(http, before)


# --------------------------------------------------------------------------------- concurrency


def test_concurrent_chats_over_base_and_an_adapter(
    acme: openai.OpenAI, http: httpx.Client, tenant_keys: dict[str, str], support_v1
) -> None:
    current = http.get("/v1/adapters/acme/support", headers=auth(tenant_keys["acme"])).json()["current_version"]
    prompts = [PROMPT, "Name a colour.", "Say hello."]
    jobs = [(model, prompt) for model in ("base", "acme/support") for prompt in prompts]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(lambda job: greedy(acme, job[0], job[1], max_tokens=8), jobs))
    for (model, prompt), completion in zip(jobs, results, strict=True):
        expected = "base" if model == "base" else f"acme/support@{current}"
        assert completion.model == expected, (model, prompt, completion)
        assert completion.choices[0].message.content, (model, prompt, completion)
        assert completion.choices[0].finish_reason in ("stop", "length")
