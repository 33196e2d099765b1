"""Canary rollouts, feedback and the scoreboard against a live server, through HTTP and the openai client.

A 90/10 split over two versions: 1,000 conversations land 90±3 % / 10±3 %, a conversation stays on
its version, pinned ids are unaffected, and the reply's ``model`` names the version that answered;
promotion and rollback are one call each. Feedback is stored against the answering version and
shows in the scoreboard; comments and texts only where the tenant stores conversations; the
preference export pairs up- and down-rated answers to the same messages.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.integration.conftest import Server, auth, upload_ok

pytestmark = pytest.mark.integration
ADAPTER = "/v1/adapters/acme/canary"


@pytest.fixture(scope="module")
def canary(http: httpx.Client, tenant_keys: dict[str, str], lora_v1: Path, lora_v2: Path) -> dict[str, Any]:
    """``acme/canary`` with versions 1 and 2 (2 current)."""
    upload_ok(http, tenant_keys["acme"], lora_v1, "canary")
    return upload_ok(http, tenant_keys["acme"], lora_v2, "canary")


def patch(http: httpx.Client, key: str, traffic: Any, path: str = ADAPTER) -> httpx.Response:
    return http.patch(path, json={"traffic": traffic}, headers=auth(key))


# A system prompt of a few prefix-cache blocks: every request of a version reuses its computed
# prefix, so a thousand requests cost a few prefilled tokens each.
SYSTEM = "You are the support assistant of Acme Parcels. Answer briefly and politely. " * 5


def ask(client: openai.OpenAI, model: str, user: str | None, content: str = "Hi", max_tokens: int = 1) -> Any:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
    return client.chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens, temperature=0, user=user
    )


def poke(client: openai.OpenAI, model: str, user: str) -> str:
    """The version that answers a one-token completion for conversation ``user``."""
    return client.completions.create(model=model, prompt="Hi", max_tokens=1, temperature=0, user=user).model


def test_a_split_spreads_conversations_by_weight_and_keeps_each_on_its_version(
    http: httpx.Client, tenant_keys: dict[str, str], acme: openai.OpenAI, canary: dict[str, Any]
) -> None:
    key = tenant_keys["acme"]
    response = patch(http, key, {"1": 90, "2": 10})
    assert response.status_code == 200, response.text
    assert response.json()["traffic"] == {"1": 90, "2": 10} and response.json()["current_version"] == 2
    conversations = [f"visitor-{i}" for i in range(400)]
    # Four hundred cheap requests (a one-token text completion: the split is the same for every
    # endpoint), then a chat turn of a hundred of the same conversations, which must stay put.
    # A conversation's version is a hash of its id: the counts are the same on every run; the
    # bounds are 3.3 standard deviations of a fair 90/10 draw (+-20 of the expected 360 and 40).
    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(lambda user: poke(acme, "acme/canary", user), conversations))
        again = list(pool.map(lambda user: ask(acme, "acme/canary", user, "Hello again").model, conversations[:100]))
    shares = Counter(first)
    assert set(shares) == {"acme/canary@1", "acme/canary@2"}
    assert 340 <= shares["acme/canary@1"] <= 380 and 20 <= shares["acme/canary@2"] <= 60, shares
    assert again == first[:100]  # every conversation stayed on its version
    assert ask(acme, "acme/canary@2", "visitor-0").model == "acme/canary@2"  # pinned: unaffected
    stats = http.get(f"{ADAPTER}/stats", headers=auth(key)).json()
    requests = {entry["version"]: entry["requests"] for entry in stats["data"]}
    assert requests[1] >= shares["acme/canary@1"] and requests[2] >= shares["acme/canary@2"]
    assert stats["traffic"] == {"1": 90, "2": 10}


def test_promote_and_roll_back_are_one_call_each(
    http: httpx.Client, tenant_keys: dict[str, str], acme: openai.OpenAI, canary: dict[str, Any]
) -> None:
    key = tenant_keys["acme"]
    assert patch(http, key, {"1": 50, "2": 50}).status_code == 200
    promoted = patch(http, key, {"1": 100}).json()
    assert promoted["current_version"] == 1 and promoted["traffic"] is None
    assert {ask(acme, "acme/canary", f"u{i}").model for i in range(12)} == {"acme/canary@1"}
    assert patch(http, key, {"1": 50, "2": 50}).status_code == 200
    rolled = http.post(f"{ADAPTER}/rollback", json={"version": 2}, headers=auth(key)).json()
    assert rolled["current_version"] == 2
    assert http.get(ADAPTER, headers=auth(key)).json()["traffic"] is None
    assert patch(http, key, {"1": 50, "2": 50}).status_code == 200
    assert patch(http, key, None).json()["traffic"] is None  # a split ends; current answers


@pytest.mark.parametrize(
    ("traffic", "status"),
    [
        ({"1": 90, "2": 20}, 400),
        ({"1": 90, "9": 10}, 404),
        ({"01": 100}, 400),
        ({"1": 100.0}, 400),
        ({"1": True}, 400),
        ([1, 2], 400),
        ({str(v): 0 for v in range(1, 10)}, 400),
    ],
)
def test_bad_splits_are_refused_and_change_nothing(
    http: httpx.Client, tenant_keys: dict[str, str], canary: dict[str, Any], traffic: Any, status: int
) -> None:
    key = tenant_keys["acme"]
    before = http.get(ADAPTER, headers=auth(key)).json()
    response = patch(http, key, traffic)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param" if status == 400 else "code"] in ("traffic", "adapter_not_found")
    assert http.get(ADAPTER, headers=auth(key)).json() == before


def test_another_tenant_cannot_split_or_read_stats(
    http: httpx.Client, tenant_keys: dict[str, str], canary: dict[str, Any]
) -> None:
    assert patch(http, tenant_keys["globex"], {"1": 100}).status_code == 404
    assert http.get(f"{ADAPTER}/stats", headers=auth(tenant_keys["globex"])).status_code == 404


def rate(http: httpx.Client, key: str, completion_id: str, rating: str, **extra: Any) -> httpx.Response:
    body = {"completion_id": completion_id, "rating": rating, **extra}
    return http.post("/v1/feedback", json=body, headers={**auth(key), **extra.pop("headers", {})})


def test_feedback_counts_for_the_version_that_answered(
    server: Server, http: httpx.Client, tenant_keys: dict[str, str], acme: openai.OpenAI, canary: dict[str, Any]
) -> None:
    key = tenant_keys["acme"]
    before = {e["version"]: e for e in http.get(f"{ADAPTER}/stats", headers=auth(key)).json()["data"]}
    reply = ask(acme, "acme/canary@1", "rater")
    response = rate(http, key, reply.id, "up", comment="great")
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "acme/canary@1" and response.json()["comment_stored"] is False
    assert rate(http, key, reply.id, "down").status_code == 200  # a changed mind replaces the rating
    assert rate(http, tenant_keys["globex"], reply.id, "up").status_code == 404  # not globex's answer
    assert rate(http, key, "chatcmpl-nope", "up").json()["error"]["code"] == "completion_not_found"
    assert rate(http, key, reply.id, "meh").status_code == 400
    after = {e["version"]: e for e in http.get(f"{ADAPTER}/stats", headers=auth(key)).json()["data"]}
    old = before.get(1, {"thumbs_up": 0, "thumbs_down": 0})
    assert after[1]["thumbs_down"] == old["thumbs_down"] + 1 and after[1]["thumbs_up"] == old["thumbs_up"]
    low, high = after[1]["approval_interval"]
    assert 0.0 <= low <= after[1]["approval"] <= high <= 1.0
    assert after[1]["latency_ms"]["p50"] > 0


def test_stored_conversations_feed_the_preference_export(
    http: httpx.Client, tenant_keys: dict[str, str], server: Server, acme: openai.OpenAI, canary: dict[str, Any]
) -> None:
    key = tenant_keys["acme"]
    assert http.get("/v1/feedback/export?format=preference", headers=auth(key)).text == ""
    settings = {"store_conversations": True}
    assert http.patch("/v1/tenants/acme", json=settings, headers=auth(key)).status_code == 200
    try:
        good = ask(acme, "acme/canary@1", "a", "Where is my parcel?", max_tokens=12)
        bad = ask(acme, "base", "b", "Where is my parcel?", max_tokens=12)
        assert good.choices[0].message.content != bad.choices[0].message.content  # a pair needs two answers
        assert rate(http, key, good.id, "up", comment="spot on").json()["comment_stored"] is True
        assert rate(http, key, bad.id, "down").status_code == 200
        lines = [json.loads(line) for line in http.get("/v1/feedback/export", headers=auth(key)).text.splitlines()]
        pair = next(p for p in lines if p["input"]["messages"][-1]["content"] == "Where is my parcel?")
        assert pair["preferred_output"] == [{"role": "assistant", "content": good.choices[0].message.content}]
        assert pair["non_preferred_output"] == [{"role": "assistant", "content": bad.choices[0].message.content}]
        chats = http.get("/v1/feedback/export?format=chat", headers=auth(key)).text.splitlines()
        assert any(json.loads(c)["messages"][-1]["content"] == good.choices[0].message.content for c in chats)
        assert http.get("/v1/feedback/export?format=xml", headers=auth(key)).status_code == 400
    finally:
        http.patch("/v1/tenants/acme", json={"store_conversations": False}, headers=auth(key))
