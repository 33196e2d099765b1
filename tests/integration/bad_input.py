"""The bad-input battery's world: tests/integration/test_bad_input*.py run against a server of their
own, with small limits so that every size cap is cheap to pass, and a state of their own so that
"nothing changed" is checked exactly. Cases are table rows (:class:`Case`); :func:`assert_refused`
sends one and checks the refusal and that nothing changed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from tests.conftest import make_lora
from tests.integration.conftest import (
    Server,
    assert_healthy,
    assert_openai_error,
    auth,
    start_server,
    stop_server,
    upload_ok,
)

BAD_INPUT_SETTINGS = {
    "MAX_CHAT_BODY_BYTES": "8192",
    "MAX_UPLOAD_BYTES": "262144",
    "MAX_FILE_BYTES": "2048",
    "MAX_CONTEXT": "256",
    "DEFAULT_MAX_TOKENS": "4",
    "PUBLISHABLE_MAX_TOKENS": "8",
    "AUTH_FAILURES_PER_MINUTE": "40",
}
"""``SWAPLORA_*`` of the bad-input server; the tests derive their oversized bodies from these."""
MANAGEMENT_JSON_LIMIT = 64 * 1024
"""The fixed cap of every JSON body but chat's (``server.routes.tenants.MAX_JSON_BYTES``)."""
ALLOWED_ORIGIN = "https://acme.example"
TRAINING_DOC = b"# Lumen Lane Bikes\n\nQ: Do you rent bikes?\nA: Yes, city bikes rent for 15 euros a day.\n"
WRONG_KEY = "sk-swl-" + "0" * 43


@dataclass
class BadInputWorld:
    """The bad-input server and what exists on it.

    ``keys``: ``admin``, ``acme``, ``globex``, ``pk`` (acme's publishable key, allowed from
    :data:`ALLOWED_ORIGIN`) and ``bad`` (a key nobody has). ``ids``: ``$acme_file``,
    ``$globex_file``, ``$globex_job`` (cancelled), ``$globex_key`` (globex's key id).
    Adapters: ``acme/support`` versions 1 and 2, ``globex/private`` version 1.
    """

    server: Server
    http: httpx.Client
    keys: dict[str, str]
    ids: dict[str, str]
    lora: Path
    """A valid rank-2 adapter for the served base on one layer (a few KB)."""


def tiny_lora(model_dir: Path, target: Path, rank: int, seed: int) -> Path:
    """A LoRA for ``model_dir`` on layer 0's q_proj only: valid, and small enough for tight limits."""
    return make_lora(model_dir, target, rank=rank, seed=seed, modules=["layers.0.self_attn.q_proj"])


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
    )
    return response.json()


def _populate(srv: Server, http: httpx.Client, lora: Path) -> BadInputWorld:
    admin = auth(srv.admin_key)
    keys = {"admin": srv.admin_key, "bad": WRONG_KEY}
    for tenant in ("acme", "globex"):
        keys[tenant] = _created(http.post("/v1/tenants", json={"id": tenant}, headers=admin))["api_key"]
    for tenant, name in (("acme", "support"), ("acme", "support"), ("globex", "private")):
        upload_ok(http, keys[tenant], lora, name)
    keys["pk"] = _created(http.post("/v1/tenants/acme/keys", json={"kind": "publishable"}, headers=auth(keys["acme"])))[
        "api_key"
    ]
    _created(http.patch("/v1/tenants/acme", json={"allowed_origins": [ALLOWED_ORIGIN]}, headers=auth(keys["acme"])))
    ids = {}
    for tenant in ("acme", "globex"):
        files = {"file": (f"{tenant}.md", TRAINING_DOC, "text/markdown")}
        ids[f"${tenant}_file"] = _created(
            http.post("/v1/files", data={"purpose": "fine-tune"}, files=files, headers=auth(keys[tenant]))
        )["id"]
    job = _created(
        http.post(
            "/v1/fine_tuning/jobs",
            headers=auth(keys["globex"]),
            json={"model": "base", "training_file": ids["$globex_file"], "suffix": "gone"},
        )
    )
    cancelled = _created(http.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=auth(keys["globex"])))
    assert cancelled["status"] == "cancelled", cancelled
    ids["$globex_job"] = job["id"]
    ids["$globex_key"] = _created(http.get("/v1/tenants/globex/keys", headers=admin))["data"][0]["id"]
    return BadInputWorld(server=srv, http=http, keys=keys, ids=ids, lora=lora)


@pytest.fixture(scope="session")
def bad_input_world(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BadInputWorld]:
    lora = tiny_lora(embedded_model_dir, tmp_path_factory.mktemp("lora-tiny"), rank=2, seed=5)
    srv = start_server(
        embedded_model_dir, tmp_path_factory.mktemp("bad-input-data"), secrets.token_hex(16), **BAD_INPUT_SETTINGS
    )
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as client:
            yield _populate(srv, client, lora)
    finally:
        stop_server(srv.process)


def world_state(world: BadInputWorld) -> dict[str, Any]:
    """What a refused request must leave as it was: the data directory's adapters, uploads, files
    and job folders on disk (paths and sizes), and every listing the admin can read."""
    disk = {}
    for sub in ("adapters", "tmp", "files", "jobs"):
        root = world.server.data / sub
        if root.exists():
            disk.update(
                {f"{sub}/{p.relative_to(root)}": p.stat().st_size if p.is_file() else None for p in root.rglob("*")}
            )
    state: dict[str, Any] = {"disk": disk}
    for path in (
        "/v1/tenants",
        "/v1/adapters",
        "/v1/files",
        "/v1/fine_tuning/jobs",
        "/v1/comparisons",
        "/v1/tenants/acme/keys",
        "/v1/tenants/globex/keys",
    ):
        state[path] = _created(world.http.get(path, headers=auth(world.keys["admin"])))
    return state


def fill_ids(value: Any, ids: dict[str, str]) -> Any:
    """``value`` (a path or a JSON body) with every ``$name`` of ``ids`` replaced by the id."""
    if isinstance(value, str):
        for name in sorted(ids, key=len, reverse=True):
            value = value.replace(name, ids[name])
        return value
    if isinstance(value, dict):
        return {fill_ids(k, ids): fill_ids(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_ids(v, ids) for v in value]
    return value


class Case(NamedTuple):
    """One bad request and the refusal it must get. ``key`` names a key of :class:`BadInputWorld`
    (None: no Authorization header). ``body``: bytes are sent as they are (as JSON), a callable
    gets the world and returns httpx keyword arguments, anything else is sent as JSON (with
    ``$name`` ids filled in). ``bug``: a known bug, which makes the case a strict xfail."""

    id: str
    method: str
    path: str
    key: str | None
    body: Any = None
    status: int | tuple[int, ...] = 400
    code: str | None = None
    param: str | None = None
    bug: str | None = None


def cases_for(method: str, path: str) -> Callable[..., Case]:
    """A builder of :class:`Case` s against one route:
    ``(id, body, status=400, code=None, param=None, key="acme", bug=None)``."""

    def build(
        id: str,
        body: Any,
        status: int | tuple[int, ...] = 400,
        code: str | None = None,
        param: str | None = None,
        key: str | None = "acme",
        bug: str | None = None,
    ) -> Case:
        return Case(id, method, path, key, body, status, code, param, bug)

    return build


def case_params(cases: list[Case]) -> list[Any]:
    """``cases`` for ``pytest.mark.parametrize("case", ...)``, with their ids and bug marks."""
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    return [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=f"bug: {c.bug}")] if c.bug else [])
        for c in cases
    ]


def send_case(world: BadInputWorld, case: Case) -> httpx.Response:
    kwargs: dict[str, Any] = {}
    if callable(case.body):
        kwargs = case.body(world)
    elif isinstance(case.body, bytes):
        kwargs = {"content": case.body, "headers": {"Content-Type": "application/json"}}
    elif case.body is not None:
        kwargs = {
            "content": json.dumps(fill_ids(case.body, world.ids)).encode(),
            "headers": {"Content-Type": "application/json"},
        }
    # A fresh connection per case: after a 500 the server drops the connection it answered on.
    headers = {"Connection": "close", **({} if case.key is None else auth(world.keys[case.key]))}
    kwargs["headers"] = {**headers, **kwargs.get("headers", {})}
    return world.http.request(case.method, fill_ids(case.path, world.ids), **kwargs)


def assert_refused(world: BadInputWorld, case: Case) -> httpx.Response:
    """Send ``case``: an OpenAI-shaped 4xx as the case says, the server still up, and (for anything
    but a GET) nothing changed on disk or in any listing."""
    before = world_state(world) if case.method != "GET" else None
    response = send_case(world, case)
    assert_openai_error(response, case.status, code=case.code, param=case.param)
    if response.status_code == 405:
        assert response.headers.get("allow"), response.headers
    assert_healthy(world.http)
    if before is not None:
        assert world_state(world) == before
    return response


def streamed(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The body of httpx ``kwargs`` (``content``, or ``data``/``files``) sent chunked, without a
    Content-Length: only the server's running count of the bytes can stop it."""
    request = httpx.Request("POST", "http://body.invalid/", **kwargs)
    body = request.read()
    headers = {**kwargs.get("headers", {}), "Content-Type": request.headers.get("Content-Type", "application/json")}
    return {"content": iter([body[i : i + 16384] for i in range(0, len(body), 16384)]), "headers": headers}


@pytest.fixture(scope="module")
def bad_input_baseline(bad_input_world: BadInputWorld) -> dict[str, Any]:
    """:func:`world_state` when a bad-input module starts (use it from the module's first test on)."""
    return world_state(bad_input_world)


def assert_alive_and_unchanged(world: BadInputWorld, baseline: dict[str, Any]) -> None:
    """The server answers, is ready, and holds exactly what it held at ``baseline``."""
    assert_healthy(world.http)
    assert world.http.get("/ready").status_code == 200
    assert world_state(world) == baseline


def multipart_raw(content: bytes, content_type: str):
    """A case body: ``content`` sent as it is, as ``content_type``."""
    return lambda w: {"content": content, "headers": {"Content-Type": content_type}}


def form(*parts: tuple[str, str | None, bytes]):
    """A case body: a multipart form built by hand from (field, file name or None for a text field,
    content), for the shapes httpx will not build (text fields only, an empty file name)."""
    boundary = "bad-input-boundary"
    chunks = []
    for field, file_name, content in parts:
        disposition = f'form-data; name="{field}"' + ("" if file_name is None else f'; filename="{file_name}"')
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n")
    return multipart_raw(b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}")
