"""Adapter routes end to end: real multipart uploads of real PEFT adapters into a real store.

Every refusal is checked twice: the status and error code, and that neither the store nor the
upload temp dir holds anything afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from starlette.testclient import TestClient

from tests.adapters.helpers import ALL_SHORT_NAMES, TINY_LINEAR_SHAPES, save_peft_adapter, visible_tree
from tests.server.helpers import ADMIN, BASE, CONFIG, WEIGHTS, adapter_files, assert_error, bearer, make_client


@pytest.fixture(scope="module")
def peft_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real adapters saved by peft: the good one, a smaller one, one for a wider model, one of rank 8."""
    make = tmp_path_factory.mktemp
    return {
        "good": save_peft_adapter(make("good")),
        "small": save_peft_adapter(make("small"), r=2, target_modules=["q_proj", "v_proj"]),
        "wide": save_peft_adapter(make("wide"), hidden_size=128),
        "rank8": save_peft_adapter(make("rank8"), r=8),
    }


class Env(SimpleNamespace):
    client: TestClient
    data: Path
    acme: dict[str, str]
    globex: dict[str, str]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    client = make_client(tmp_path, base=BASE, max_rank=4, max_upload_bytes=256 * 1024)
    keys = {t: client.post("/v1/tenants", json={"id": t}, headers=ADMIN).json()["api_key"] for t in ("acme", "globex")}
    return Env(client=client, data=tmp_path, acme=bearer(keys["acme"]), globex=bearer(keys["globex"]))


def upload(
    env: Env,
    directory: Path,
    name: str = "support",
    headers: dict[str, str] | None = None,
    files: list | None = None,
    data: dict[str, str] | None = None,
) -> Any:
    return env.client.post(
        "/v1/adapters",
        headers=env.acme if headers is None else headers,
        data={"name": name} if data is None else data,
        files=adapter_files(directory) if files is None else files,
    )


def assert_nothing_stored(env: Env) -> None:
    assert visible_tree(env.data / "adapters") == [".lock"]
    tmp = env.data / "tmp"
    assert not tmp.exists() or visible_tree(tmp) == []


# ------------------------------------------------------------------------------- happy paths


def test_upload_publishes_version_one(env: Env, peft_dirs: dict[str, Path]) -> None:
    response = upload(env, peft_dirs["good"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"] == "acme/support" and body["object"] == "adapter"
    assert (body["version"], body["current_version"], body["model"]) == (1, 1, "acme/support@1")
    assert (body["rank"], body["alpha"], body["target_modules"]) == (4, 8.0, list(ALL_SHORT_NAMES))
    assert body["created_at"].endswith("Z")

    stored = env.data / "adapters" / "acme" / "support" / "1"
    weights = (peft_dirs["good"] / WEIGHTS).read_bytes()
    assert (stored / WEIGHTS).read_bytes() == weights
    manifest = json.loads((stored / "manifest.json").read_text())
    assert manifest["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert (manifest["base_spec_hash"], manifest["source"]) == ("b" * 64, "upload")
    assert json.loads((stored / CONFIG).read_text())["target_modules"] == sorted(TINY_LINEAR_SHAPES)
    tmp = env.data / "tmp"
    assert not tmp.exists() or visible_tree(tmp) == []


def test_versions_rollback_and_delete(env: Env, peft_dirs: dict[str, Path]) -> None:
    assert upload(env, peft_dirs["good"]).json()["version"] == 1
    second = upload(env, peft_dirs["small"]).json()
    assert (second["version"], second["rank"], second["target_modules"]) == (2, 2, ["q_proj", "v_proj"])

    detail = env.client.get("/v1/adapters/acme/support", headers=env.acme).json()
    assert detail["current_version"] == 2 and detail["model"] == "acme/support@2"
    assert [v["model"] for v in detail["versions"]] == ["acme/support@1", "acme/support@2"]
    assert detail["versions"][0]["metrics"] == {} and detail["versions"][0]["rank"] == 4

    rolled = env.client.post("/v1/adapters/acme/support/rollback", json={"version": 1}, headers=env.acme)
    assert rolled.status_code == 200 and rolled.json()["current_version"] == 1
    assert env.client.get("/v1/adapters/acme/support", headers=env.acme).json()["current_version"] == 1
    assert_error(env.client.post("/v1/adapters/acme/support/rollback", json={"version": 9}, headers=env.acme), 404)
    for bad in ({"version": "1"}, {"version": True}, {"version": 0}, {}, {"version": 1, "x": 1}):
        assert_error(env.client.post("/v1/adapters/acme/support/rollback", json=bad, headers=env.acme), 400)

    deleted = env.client.delete("/v1/adapters/acme/support/versions/1", headers=env.acme)
    assert deleted.json() == {"id": "acme/support@1", "object": "adapter.version", "deleted": True}
    assert env.client.get("/v1/adapters/acme/support", headers=env.acme).json()["current_version"] == 2
    assert_error(env.client.delete("/v1/adapters/acme/support/versions/1", headers=env.acme), 404)
    assert env.client.delete("/v1/adapters/acme/support", headers=env.acme).json()["deleted"] is True
    assert_error(env.client.get("/v1/adapters/acme/support", headers=env.acme), 404, "adapter_not_found")
    assert env.client.get("/v1/adapters", headers=env.acme).json() == {"object": "list", "data": []}


def test_listing_is_tenant_scoped(env: Env, peft_dirs: dict[str, Path]) -> None:
    upload(env, peft_dirs["good"], "support")
    upload(env, peft_dirs["good"], "sales")
    upload(env, peft_dirs["small"], "support", headers=env.globex)
    mine = env.client.get("/v1/adapters", headers=env.acme).json()["data"]
    assert [a["id"] for a in mine] == ["acme/sales", "acme/support"]
    theirs = env.client.get("/v1/adapters", headers=env.globex).json()["data"]
    assert [a["id"] for a in theirs] == ["globex/support"]
    everything = env.client.get("/v1/adapters", headers=ADMIN).json()["data"]
    assert [a["id"] for a in everything] == ["acme/sales", "acme/support", "globex/support"]


def test_other_tenants_adapter_is_not_found(env: Env, peft_dirs: dict[str, Path]) -> None:
    upload(env, peft_dirs["good"])
    before = visible_tree(env.data / "adapters")
    requests = [
        ("GET", "/v1/adapters/acme/support", None),
        ("POST", "/v1/adapters/acme/support/rollback", {"version": 1}),
        ("DELETE", "/v1/adapters/acme/support", None),
        ("DELETE", "/v1/adapters/acme/support/versions/1", None),
    ]
    for method, url, body in requests:
        foreign = env.client.request(method, url, json=body, headers=env.globex)
        missing = env.client.request(method, url.replace("support", "nothing"), json=body, headers=env.acme)
        foreign_message = assert_error(foreign, 404)["message"]
        assert foreign_message.replace("support", "nothing") == assert_error(missing, 404)["message"]
    assert visible_tree(env.data / "adapters") == before
    # Naming another tenant in the upload form does not reach it either.
    assert_error(upload(env, peft_dirs["good"], headers=env.globex, data={"name": "x", "tenant": "acme"}), 404)
    assert [a["id"] for a in env.client.get("/v1/adapters", headers=ADMIN).json()["data"]] == ["acme/support"]


def test_admin_uploads_for_a_named_tenant(env: Env, peft_dirs: dict[str, Path]) -> None:
    assert_error(upload(env, peft_dirs["good"], headers=ADMIN), 400)
    assert_error(upload(env, peft_dirs["good"], headers=ADMIN, data={"name": "x", "tenant": "nobody"}), 404)
    assert_nothing_stored(env)
    response = upload(env, peft_dirs["good"], headers=ADMIN, data={"name": "support", "tenant": "globex"})
    assert response.status_code == 201 and response.json()["id"] == "globex/support"


# ------------------------------------------------------------------------------- refusals


def _pickled_weights(directory: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(load_file(directory / WEIGHTS), buffer)
    return buffer.getvalue()


def test_pickle_bin_is_refused(env: Env, peft_dirs: dict[str, Path]) -> None:
    files = [
        ("files", (CONFIG, (peft_dirs["good"] / CONFIG).read_bytes(), "application/json")),
        ("files", ("adapter_model.bin", _pickled_weights(peft_dirs["good"]), "application/octet-stream")),
    ]
    error = assert_error(upload(env, peft_dirs["good"], files=files), 400, "only_safetensors")
    assert "only safetensors" in error["message"]
    assert_nothing_stored(env)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("pickle-named-safetensors", "not a safetensors file"),
        ("garbage", "not a safetensors file"),
        ("wide", "another model"),
        ("rank8", "from 1 to 4"),
        ("bad-config", "adapter_config.json"),
    ],
)
def test_invalid_adapters_are_refused(env: Env, peft_dirs: dict[str, Path], case: str, message: str) -> None:
    good = peft_dirs["good"]
    files = {
        "pickle-named-safetensors": adapter_files(good, **{WEIGHTS: _pickled_weights(good)}),
        "garbage": adapter_files(good, **{WEIGHTS: b"\x00garbage" * 64}),
        "wide": adapter_files(peft_dirs["wide"]),
        "rank8": adapter_files(peft_dirs["rank8"]),
        "bad-config": adapter_files(good, **{CONFIG: b"[1, 2, 3]"}),
    }[case]
    error = assert_error(upload(env, good, files=files), 400, "invalid_adapter")
    assert message in error["message"]
    assert_nothing_stored(env)


@pytest.mark.parametrize("name", ["..", "a/b", "../etc", "", "Support", "a" * 64, "x.y"])
def test_bad_names_are_refused(env: Env, peft_dirs: dict[str, Path], name: str) -> None:
    assert assert_error(upload(env, peft_dirs["good"], name=name), 400)["param"] == "name"
    assert_nothing_stored(env)


def test_malformed_forms_are_refused(env: Env, peft_dirs: dict[str, Path]) -> None:
    good = adapter_files(peft_dirs["good"])
    cases = [
        dict(files=good[:1]),  # weights missing
        dict(files=good + [("files", ("README.md", b"hi", "text/plain"))]),  # a third file
        dict(files=[good[0], good[0]]),  # the config twice
        dict(files=good, data={"name": "support", "color": "red"}),  # an unknown field
        dict(files=good, data={}),  # no name
        dict(files=[("weights", good[1][1]), good[0]]),  # file under the wrong field
    ]
    for case in cases:
        assert_error(upload(env, peft_dirs["good"], **case), 400)
    assert_error(env.client.post("/v1/adapters", json={"name": "support"}, headers=env.acme), 415)
    assert_nothing_stored(env)


def test_uploads_over_the_limit_get_413(tmp_path: Path, peft_dirs: dict[str, Path]) -> None:
    client = make_client(tmp_path, base=BASE, max_upload_bytes=4096)
    key = client.post("/v1/tenants", json={"id": "acme"}, headers=ADMIN).json()["api_key"]
    env = Env(client=client, data=tmp_path, acme=bearer(key), globex={})
    huge = adapter_files(peft_dirs["good"], **{WEIGHTS: b"x" * 200_000})  # past the multipart slack too
    assert_error(upload(env, peft_dirs["good"], files=huge), 413, "upload_too_large")
    # The real adapter (~36 KB) fits the multipart slack but not the 4 KB file limit.
    assert_error(upload(env, peft_dirs["good"]), 413, "upload_too_large")
    assert_nothing_stored(env)


def test_chunked_upload_stops_reading_at_the_cap(tmp_path: Path, peft_dirs: dict[str, Path]) -> None:
    """Without Content-Length the body must not be read (and spooled) past the cap.

    TestClient hands the app the whole body in one message, so this drives the ASGI app directly
    with a receive() that streams 8 KB chunks and counts how many were pulled.
    """
    client = make_client(tmp_path, base=BASE, max_upload_bytes=4096)
    key = client.post("/v1/tenants", json={"id": "acme"}, headers=ADMIN).json()["api_key"]
    huge = adapter_files(peft_dirs["good"], **{WEIGHTS: b"x" * 1_000_000})
    request = client.build_request("POST", "/v1/adapters", data={"name": "support"}, files=huge)
    body = request.read()
    chunks = [body[i : i + 8192] for i in range(0, len(body), 8192)]
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if pulled > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/adapters",
        "raw_path": b"/v1/adapters",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", request.headers["content-type"].encode()),
        ],
        "client": ("test", 1),
        "server": ("test", 80),
    }
    asyncio.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "upload_too_large"
    assert pulled * 8192 <= 4096 + 64 * 1024 + 8192 < len(body) / 10
    assert visible_tree(tmp_path / "adapters") == [".lock"]


def test_auth_and_loading_base(env: Env, peft_dirs: dict[str, Path]) -> None:
    assert_error(upload(env, peft_dirs["good"], headers={}), 401, "missing_api_key")
    assert_error(upload(env, peft_dirs["good"], headers=bearer("sk-swl-nope")), 401, "invalid_api_key")
    assert_error(env.client.get("/v1/adapters"), 401, "missing_api_key")
    assert_error(env.client.delete("/v1/adapters/acme/support", headers=bearer("wrong")), 401, "invalid_api_key")
    env.client.app.state.services.base = None
    response = upload(env, peft_dirs["good"])
    assert_error(response, 503, "model_loading")
    assert int(response.headers["retry-after"]) > 0
    assert_nothing_stored(env)


# ------------------------------------------------------------------------------- quotas


def test_uploads_past_a_quota_are_refused_with_nothing_stored(env: Env, peft_dirs: dict[str, Path]) -> None:
    ceilings = {"adapters": 1, "adapter_versions": 2}
    assert env.client.patch("/v1/tenants/acme", json={"limit_ceilings": ceilings}, headers=ADMIN).status_code == 200
    assert upload(env, peft_dirs["good"]).status_code == 201
    assert upload(env, peft_dirs["good"]).status_code == 201
    before = visible_tree(env.data / "adapters")
    error = assert_error(upload(env, peft_dirs["good"]), 429, "quota_exceeded")
    assert "2 of its 2 adapter versions" in error["message"]
    assert "adapters (its quota)" in assert_error(upload(env, peft_dirs["good"], name="sales"), 429)["message"]
    used = env.client.get("/v1/tenants/acme", headers=env.acme).json()["usage"]
    assert (used["adapters"], used["adapter_versions"]) == (1, 2)
    tight = {"adapter_versions": None, "storage_bytes": used["storage_bytes"] + 100}
    assert env.client.patch("/v1/tenants/acme", json={"limit_ceilings": tight}, headers=ADMIN).status_code == 200
    assert_error(upload(env, peft_dirs["good"]), 413, "quota_exceeded")
    assert visible_tree(env.data / "adapters") == before and visible_tree(env.data / "tmp") == []
    # Deleting a version frees its room.
    assert env.client.delete("/v1/adapters/acme/support/versions/1", headers=env.acme).status_code == 200
    assert (
        env.client.patch(
            "/v1/tenants/acme", json={"limit_ceilings": {"storage_bytes": None}}, headers=ADMIN
        ).status_code
        == 200
    )
    assert upload(env, peft_dirs["good"]).status_code == 201
