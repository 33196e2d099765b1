"""Chat through Ray Serve engine replicas (``swaplora serve --cluster local --replicas 2``): streamed
and not, adapter-affinity routing measured from the replicas' own reports, a new version served
without restart, and a replica killed mid-stream failing only its own rows."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.cluster.conftest import ADAPTERS
from tests.integration.conftest import PROMPT, Server, adapter_files, auth, upload

pytestmark = pytest.mark.integration


def replicas(admin: httpx.Client) -> list[dict[str, Any]]:
    response = admin.get("/v1/cluster/replicas")
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def holder(admin: httpx.Client, model: str) -> dict[str, Any]:
    """The replica the last request for ``model`` (a served id) landed on."""
    for replica in sorted(replicas(admin), key=lambda r: -r["last_seen"]):
        if model in replica["adapters"]:
            return replica
    raise AssertionError(f"no replica reported {model}")


def publish(http: httpx.Client, key: str, lora: Path, name: str) -> str:
    response = upload(http, key, adapter_files(lora), name)
    assert response.status_code == 201, response.text
    return str(response.json()["model"])  # the version published: tenant/name@version


def ask(client: openai.OpenAI, model: str, tokens: int = 4) -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=tokens, temperature=0
    )


def test_chat_streams_through_the_replicas(cluster: Server, admin: httpx.Client, acme_key: str) -> None:
    client = cluster.openai(acme_key)
    whole = ask(client, "base", tokens=16)
    started = time.monotonic()
    arrivals, pieces = [], []
    stream = client.chat.completions.create(
        model="base", messages=[{"role": "user", "content": PROMPT}], max_tokens=16, temperature=0, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == whole.choices[0].message.content and whole.usage.completion_tokens > 4
    assert len(pieces) >= 4 and arrivals[-1] - arrivals[0] > 0.01, "tokens should arrive as they are generated"
    assert {r["id"] for r in replicas(admin)}  # the replicas reported themselves
    forbidden = httpx.get(f"{cluster.url}/v1/cluster/replicas", headers=auth(acme_key))
    assert forbidden.status_code == 403


def test_a_client_that_leaves_cancels_its_rows_on_the_replica(
    cluster: Server, admin: httpx.Client, acme_key: str
) -> None:
    client = cluster.openai(acme_key)
    messages = [{"role": "user", "content": "Tell me a long story."}]
    stream = client.chat.completions.create(
        model="base", messages=messages, max_tokens=2000, temperature=0, stream=True, extra_body={"ignore_eos": True}
    )
    for seen, _ in enumerate(stream):
        if seen == 3:
            break
    ask(client, "base", tokens=1)  # lands where "base" is held: beside the open stream
    assert holder(admin, "base")["running_at_last_request"] >= 1, replicas(admin)
    stream.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ask(client, "base", tokens=1)
        if holder(admin, "base")["running_at_last_request"] == 0:
            return
        time.sleep(0.5)
    pytest.fail(f"the abandoned stream kept running on its replica: {replicas(admin)}")


def test_requests_land_on_replicas_holding_their_adapter(
    cluster: Server, admin: httpx.Client, acme_key: str, loras: list[Path]
) -> None:
    client = cluster.openai(acme_key)
    with httpx.Client(base_url=cluster.url, timeout=300) as http:
        models = [publish(http, acme_key, loras[0], f"aff{i}") for i in range(ADAPTERS)]
    for model in models:  # warm-up: each adapter lands somewhere and is loaded there
        ask(client, model)
    before = {r["id"]: r for r in replicas(admin)}
    rounds = 4
    for _ in range(rounds):
        for model in models:
            ask(client, model)
    after = {r["id"]: r for r in replicas(admin)}
    requests = sum(r["requests"] - before.get(r["id"], {}).get("requests", 0) for r in after.values())
    held = sum(
        r["requests_adapter_held"] - before.get(r["id"], {}).get("requests_adapter_held", 0) for r in after.values()
    )
    assert requests == rounds * ADAPTERS
    assert held / requests >= 0.9, f"only {held} of {requests} requests found their adapter held: {after}"
    loads = {name: r["adapter_loads"] for name, r in after.items()}
    assert sum(loads.values()) <= ADAPTERS + 2, f"every adapter should load about once in all: {loads}"
    placed = [model for r in after.values() for model in r["adapters"] if model in models]
    assert len(placed) <= ADAPTERS + 2, f"each adapter should stay on one replica: {after}"
    print(f"\n[affinity] {held} of {requests} requests found their adapter held; loads per replica {loads}")


def test_a_new_version_is_served_by_every_replica_and_a_killed_replica_fails_only_its_rows(
    cluster: Server, admin: httpx.Client, acme_key: str, loras: list[Path]
) -> None:
    client = cluster.openai(acme_key)
    with httpx.Client(base_url=cluster.url, timeout=300) as http:
        publish(http, acme_key, loras[0], "live")
        assert ask(client, "acme/live").model == "acme/live@1"
        v2 = publish(http, acme_key, loras[1], "live")  # published while both replicas run
    assert ask(client, "acme/live").model == v2 == "acme/live@2"
    victim = holder(admin, v2)
    others = [r for r in replicas(admin) if r["id"] != victim["id"]]
    assert others, "two replicas should have served by now"
    # One long stream on the victim (its adapter lives there), one on the other replica.
    survivor_model = others[0]["adapters"][0]
    results: dict[str, Any] = {}

    def stream(model: str) -> None:
        try:
            chunks = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Tell me a long story."}],
                max_tokens=160,
                temperature=0,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            results[model] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        except openai.APIError as exc:
            results[model] = exc

    threads = [threading.Thread(target=stream, args=(m,)) for m in (v2, survivor_model)]
    for thread in threads:
        thread.start()
    time.sleep(3)  # both streams are generating
    os.kill(victim["pid"], signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=300)
    assert isinstance(results[v2], openai.APIError), f"the killed replica's stream should fail: {results[v2]!r}"
    assert "replica" in str(results[v2])
    assert isinstance(results[survivor_model], str) and len(results[survivor_model]) > 100, results[survivor_model]
    # The next requests succeed: the survivor serves the new version from the shared store.
    for _ in range(3):
        reply = ask(client, "acme/live")
        assert reply.model == "acme/live@2" and reply.choices[0].message.content
