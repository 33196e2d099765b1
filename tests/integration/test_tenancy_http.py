"""Tenant isolation, settings, keys and limits against the live server with the real base.

The canary test is the one that matters most: two tenants each upload a different random LoRA
under the *same* adapter name, so a request served with the wrong tenant's adapter (or with none)
answers differently, token for token, under greedy decoding. 100 interleaved concurrent requests
(so they share batches in the engine) must each get their own tenant's canary.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.integration.conftest import Server, adapter_files, assert_openai_error, auth, greedy, upload_ok

pytestmark = pytest.mark.integration

TENANTS = ("canary-a", "canary-b")
CANARY_PROMPTS = ("What is the capital of France?", "Name a colour.", "Tell me a fact about bikes.")
CANARY_TOKENS = 2
CANARY_MARGIN = 0.5
"""Nats by which each adapter's first answer token must beat its runner-up. That token tells the
tenants apart, and a near tie there is decided by rounding: with bf16 logits (0.125 apart near the
top) a prefill that continues from the prefix cache can round the other way than the fixture's cold
one, so a tenant gets its adapter's second choice (which may be the base's answer) although its
adapter was applied. Such a prompt is no canary; the next one is tried."""
REQUESTS = 100


def _new_tenant(server: Server, http: httpx.Client, tenant: str) -> str:
    response = http.post("/v1/tenants", json={"id": tenant}, headers=auth(server.admin_key))
    assert response.status_code == 201, response.text
    return response.json()["api_key"]


@pytest.fixture(scope="module")
def canary_keys(server: Server, http: httpx.Client, lora_v1: Path, lora_v2: Path) -> dict[str, str]:
    """Two tenants, each with its own random adapter published as ``<tenant>/bot``."""
    keys = {tenant: _new_tenant(server, http, tenant) for tenant in TENANTS}
    for tenant, lora in zip(TENANTS, (lora_v1, lora_v2)):
        upload_ok(http, keys[tenant], lora, "bot")
    return keys


def _answer(server: Server, key: str, model: str, prompt: str) -> str:
    return greedy(server.openai(key), model, prompt, max_tokens=CANARY_TOKENS).choices[0].message.content


def _answer_and_margin(server: Server, key: str, model: str, prompt: str) -> tuple[str, float]:
    """The greedy answer and its first token's lead over the runner-up, in nats."""
    reply = greedy(server.openai(key), model, prompt, max_tokens=CANARY_TOKENS, logprobs=True, top_logprobs=2)
    first = reply.choices[0].logprobs.content[0].top_logprobs
    return reply.choices[0].message.content, first[0].logprob - first[1].logprob


@pytest.fixture(scope="module")
def canaries(server: Server, canary_keys: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A prompt whose greedy answer differs between the two adapters and the base, each adapter's
    first token by a clear margin (:data:`CANARY_MARGIN`); the answers."""
    seen = []
    for prompt in CANARY_PROMPTS:
        replies = {t: _answer_and_margin(server, canary_keys[t], f"{t}/bot", prompt) for t in TENANTS}
        answers = {t: answer for t, (answer, _) in replies.items()}
        base = _answer(server, canary_keys[TENANTS[0]], "base", prompt)
        if len({*answers.values(), base}) == 3 and all(margin >= CANARY_MARGIN for _, margin in replies.values()):
            return prompt, answers
        seen.append((prompt, replies, base))
    pytest.fail(f"no prompt tells the two random adapters and the base apart by a clear margin: {seen}")


def test_interleaved_concurrent_requests_each_get_their_own_adapter(
    server: Server, canary_keys: dict[str, str], canaries: tuple[str, dict[str, str]]
) -> None:
    prompt, expected = canaries
    order = [TENANTS[i % 2] for i in range(REQUESTS)]

    def ask(tenant: str) -> str:
        return _answer(server, canary_keys[tenant], f"{tenant}/bot", prompt)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, order))
    wrong = [(tenant, got) for tenant, got in zip(order, answers) if got != expected[tenant]]
    assert wrong == [], f"{len(wrong)} wrong canaries of {REQUESTS} (expected {expected}): {wrong[:5]}"


def test_other_tenants_adapter_is_refused_everywhere(
    server: Server, http: httpx.Client, canary_keys: dict[str, str], lora_v2: Path
) -> None:
    a, b = (auth(canary_keys[t]) for t in TENANTS)
    # use: the same 404 as a missing model, pinned version or not
    for model in ("canary-a/bot", "canary-a/bot@1"):
        with pytest.raises(openai.NotFoundError):
            greedy(server.openai(canary_keys["canary-b"]), model, max_tokens=1)
    # listing: neither the models API nor the adapters API shows it
    assert "canary-a/bot" not in {m.id for m in server.openai(canary_keys["canary-b"]).models.list().data}
    assert all(not x["id"].startswith("canary-a/") for x in http.get("/v1/adapters", headers=b).json()["data"])
    assert_openai_error(http.get("/v1/adapters/canary-a/bot", headers=b), 404)
    # upload into another tenant: a tenant key cannot name a tenant at all
    before = http.get("/v1/adapters/canary-a/bot", headers=a).json()["current_version"]
    refused = http.post(
        "/v1/adapters", headers=b, data={"name": "bot", "tenant": "canary-a"}, files=adapter_files(lora_v2)
    )
    assert_openai_error(refused, (400, 403, 404))
    # deletion and rollback
    assert_openai_error(http.delete("/v1/adapters/canary-a/bot", headers=b), 404)
    assert_openai_error(http.post("/v1/adapters/canary-a/bot/rollback", json={"version": 1}, headers=b), 404)
    assert http.get("/v1/adapters/canary-a/bot", headers=a).json()["current_version"] == before
    # training: on another tenant's adapter, or for another tenant, is refused before any work
    jobs_before = http.get("/v1/fine_tuning/jobs", headers=a).json()["data"]
    for job in (
        {"model": "canary-a/bot", "training_file": "file-none"},
        {"model": "base", "training_file": "file-none", "tenant": "canary-a"},
    ):
        assert_openai_error(http.post("/v1/fine_tuning/jobs", json=job, headers=b), 404)
    assert http.get("/v1/fine_tuning/jobs", headers=a).json()["data"] == jobs_before
    # settings and keys: 404 for the id
    assert_openai_error(http.patch("/v1/tenants/canary-a", json={"system_prompt": "Leak!"}, headers=b), 404)
    assert_openai_error(http.post("/v1/tenants/canary-a/keys", json={"kind": "secret"}, headers=b), 404)
    assert_openai_error(http.get("/v1/tenants/canary-a/keys", headers=b), 404)
    assert http.get("/v1/tenants/canary-a", headers=a).json()["system_prompt"] is None
    # and the default model may not point at another tenant's adapter
    assert_openai_error(http.patch("/v1/tenants/canary-b", json={"default_model": "canary-a/bot"}, headers=b), 400)


def test_tenant_system_prompt_is_applied_when_the_request_has_none(
    server: Server, http: httpx.Client, canary_keys: dict[str, str]
) -> None:
    tenant = "prompted"
    key = _new_tenant(server, http, tenant)
    client = server.openai(key)
    prompt, system = "Who are you?", "You are Captain Byte, a pirate who sells bicycles. Always say Arr."

    def ask(messages: list[dict[str, str]]) -> str:
        completion = client.chat.completions.create(model="base", messages=messages, temperature=0, max_tokens=12)
        return completion.choices[0].message.content

    plain = ask([{"role": "user", "content": prompt}])
    explicit = ask([{"role": "system", "content": system}, {"role": "user", "content": prompt}])
    assert explicit != plain, "the canary system prompt must change the answer"
    assert http.patch(f"/v1/tenants/{tenant}", json={"system_prompt": system}, headers=auth(key)).status_code == 200
    assert ask([{"role": "user", "content": prompt}]) == explicit
    # a system message of the request's own wins over the tenant's
    other = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": prompt}]
    assert ask(other) != explicit
    # another tenant's requests never see it
    assert _answer(server, canary_keys["canary-b"], "base", prompt) != explicit


def test_revoked_keys_fail_at_once(server: Server, http: httpx.Client) -> None:
    key = _new_tenant(server, http, "revoker")
    extra = http.post("/v1/tenants/revoker/keys", json={"kind": "secret"}, headers=auth(key)).json()
    client = server.openai(extra["api_key"])
    assert client.models.list().data[0].id == "base"
    revoked = http.delete(f"/v1/tenants/revoker/keys/{extra['id']}", headers=auth(key))
    assert revoked.status_code == 200, revoked.text
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    with pytest.raises(openai.AuthenticationError):
        greedy(client, "base", max_tokens=1)
    assert server.openai(key).models.list().data[0].id == "base"  # the other key still works


def test_keys_are_not_in_the_database_in_clear(
    server: Server, http: httpx.Client, tenant_keys: dict[str, str], canary_keys: dict[str, str]
) -> None:
    publishable = http.post(
        "/v1/tenants/canary-a/keys", json={"kind": "publishable"}, headers=auth(canary_keys["canary-a"])
    ).json()["api_key"]
    keys = [*tenant_keys.values(), *canary_keys.values(), publishable]
    files = sorted(server.data.glob("swaplora.db*"))
    assert files, "the server's database was not found"
    raw = b"".join(p.read_bytes() for p in files)
    with sqlite3.connect(f"file:{files[0]}?mode=ro", uri=True) as db:
        stored = db.execute("SELECT count(*) FROM api_keys").fetchone()[0]
    assert stored >= len(keys)
    for key in keys:
        assert key[7:].encode() not in raw, "a key is stored in clear"
        assert key[19:].encode() not in raw, "the secret part of a key is stored in clear"


def _chat_raw(http: httpx.Client, key: str, max_tokens: int = 1) -> httpx.Response:
    body = {"model": "base", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens}
    return http.post("/v1/chat/completions", json=body, headers=auth(key))


def _until_admitted(http: httpx.Client, key: str) -> httpx.Response:
    """Retry while 429 (a finished request frees its slot as its response ends); bounded."""
    for _ in range(100):
        response = _chat_raw(http, key)
        if response.status_code != 429:
            return response
        time.sleep(0.1)
    return response


def _assert_429(response: httpx.Response) -> int:
    assert_openai_error(response, 429, code="rate_limit_exceeded")
    assert response.json()["error"]["type"] == "rate_limit_error"
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


class Limited:
    """A fresh tenant whose limits the admin sets."""

    def __init__(self, server: Server, http: httpx.Client, tenant: str, **limits: Any) -> None:
        self.key = _new_tenant(server, http, tenant)
        self.http, self.tenant, self.admin = http, tenant, auth(server.admin_key)
        self.limit(**limits)

    def limit(self, **limits: Any) -> None:
        response = self.http.patch(f"/v1/tenants/{self.tenant}", json={"limits": limits}, headers=self.admin)
        assert response.status_code == 200, response.text


def test_concurrency_limit_429_and_recovery(server: Server, http: httpx.Client) -> None:
    tenant = Limited(server, http, "limited-concurrency", concurrent_requests=1)
    # temperature 2 (seeded): near-uniform sampling practically never picks EOS early, so the
    # stream is still generating when the next request arrives, even on a fast GPU
    body = {
        "model": "base",
        "stream": True,
        "max_tokens": 1000,
        "temperature": 2.0,
        "seed": 1,
        "messages": [{"role": "user", "content": "Write a long story."}],
    }
    with http.stream("POST", "/v1/chat/completions", json=body, headers=auth(tenant.key)) as held:
        assert held.status_code == 200
        lines = held.iter_lines()  # keep a reference: a dropped iterator closes the stream
        assert next(lines).startswith("data: ")  # admitted: the stream holds the only slot
        assert _assert_429(_chat_raw(http, tenant.key)) == 1
        with pytest.raises(openai.RateLimitError) as info:  # the official client sees OpenAI's 429
            greedy(server.openai(tenant.key), "base", max_tokens=1)
        assert info.value.response.headers["retry-after"] == "1"
    # the client went away: its slot comes back and the next request is served
    assert _until_admitted(http, tenant.key).status_code == 200


def test_requests_per_minute_429_and_recovery(server: Server, http: httpx.Client) -> None:
    tenant = Limited(server, http, "limited-rpm", requests_per_minute=2)
    assert [_chat_raw(http, tenant.key).status_code for _ in range(2)] == [200, 200]
    assert 1 <= _assert_429(_chat_raw(http, tenant.key)) <= 60
    assert _assert_429(_chat_raw(http, tenant.key)) <= 60  # refused ones do not push the wait back
    tenant.limit(requests_per_minute=3)  # the window itself slides in tests/server/test_rate_limits.py
    assert _chat_raw(http, tenant.key).status_code == 200


def test_tokens_per_day_429_and_recovery(server: Server, http: httpx.Client) -> None:
    tenant = Limited(server, http, "limited-tokens", tokens_per_day=100)
    used = 0
    for _ in range(20):
        response = _chat_raw(http, tenant.key, max_tokens=8)
        if response.status_code == 429:
            break
        used += response.json()["usage"]["total_tokens"]
    assert 0 < used <= 100 + 8
    assert 60 <= _assert_429(_chat_raw(http, tenant.key, max_tokens=8)) <= 86400  # until midnight UTC
    tenant.limit(tokens_per_day=10**6)
    assert _chat_raw(http, tenant.key).status_code == 200
