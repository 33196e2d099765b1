"""Bad input against a real server, part 5: the web UI under /ui (Gradio's routes and the sign-in).

The UI's access rules are changing (every /ui route goes behind a sign-in), so these cases assert
no particular status, only what must hold whatever the rules: no 5xx, nothing leaked (no file of
the server's, no key), nothing stored in the data directory, and the server still answers. Each
case is sent anonymously, with the publishable key (public by design) and with the admin key (a
signed-in caller, so that Gradio's own handling of the bad input is reached too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.bad_input import (
    BAD_INPUT_SETTINGS,
    BadInputWorld,
    Case,
    assert_alive_and_unchanged,
    form,
    multipart_raw,
    send_case,
    world_state,
)
from tests.integration.conftest import (
    assert_healthy,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("bad_input_baseline")]

G = "/ui/gradio_api"
UPLOAD_LIMIT = int(BAD_INPUT_SETTINGS["MAX_UPLOAD_BYTES"])
LEAKS = (b"SQLite format 3", b"root:x:0:0")
"""Bytes that must never come back: the database, a system file (and, checked apart, any key)."""


UI_REQUESTS: list[tuple[str, str, str, Any]] = [
    ("file-database", "GET", f"{G}/file=$data/swaplora.db", None),
    ("file-system", "GET", f"{G}/file=/etc/passwd", None),
    ("file-traversal", "GET", f"{G}/file=..%2F..%2F..%2F..%2Fetc%2Fpasswd", None),
    ("file-remote-url", "GET", f"{G}/file=http://169.254.169.254/latest/meta-data/", None),
    ("proxy-remote-url", "GET", f"{G}/proxy=http://169.254.169.254/latest/meta-data/", None),
    ("upload-without-files", "POST", f"{G}/upload", form(("other", None, b"x"))),
    ("upload-as-json", "POST", f"{G}/upload", multipart_raw(b'{"files": []}', "application/json")),
    ("upload-multipart-garbage", "POST", f"{G}/upload", multipart_raw(b"garbage", "multipart/form-data; boundary=z")),
    (
        "upload-traversal-name",
        "POST",
        f"{G}/upload",
        lambda w: {"files": [("files", (f"../../../../../{w.server.data}/evil.txt", b"evil", "text/plain"))]},
    ),
    (
        "upload-over-limit",
        "POST",
        f"{G}/upload",
        lambda w: {"files": [("files", ("big.txt", b"x" * (UPLOAD_LIMIT + 1024), "text/plain"))]},
    ),
    ("queue-join-malformed-json", "POST", f"{G}/queue/join", multipart_raw(b"{bad", "application/json")),
    (
        "queue-join-unknown-event",
        "POST",
        f"{G}/queue/join",
        lambda w: {"json": {"data": [], "fn_index": 10**6, "session_hash": "x\n"}},
    ),
    ("queue-data-bad-session", "GET", f"{G}/queue/data?session_hash=%0A%00", None),
    ("run-unknown-api", "POST", f"{G}/run/nope", lambda w: {"json": {"data": []}}),
    ("call-unknown-api", "POST", f"{G}/call/nope", lambda w: {"json": {"data": []}}),
    ("info-post", "POST", f"{G}/info", None),
    (
        "preflight-other-site",
        "OPTIONS",
        f"{G}/upload",
        lambda w: {"headers": {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}},
    ),
    ("sign-in-wrong-key", "POST", "/ui/sign-in", lambda w: {"data": {"key": "sk-swl-wrong"}}),
    ("sign-in-oversized-form", "POST", "/ui/sign-in", lambda w: {"data": {"key": "k" * 10000}}),
    ("sign-in-json", "POST", "/ui/sign-in", lambda w: {"json": {"key": w.keys["acme"]}}),
    ("traversal-to-the-api", "GET", "/ui/%2e%2e/v1/tenants", None),
]
UI_BUGS: dict[tuple[str, str | None], str] = {}
"""Known bugs as (case, key): none left (Gradio's 500s for unknown events are ui.event_check's 4xx)."""


def ui_params() -> list[Any]:
    params = []
    for key in (None, "pk", "admin"):
        for id, method, path, body in UI_REQUESTS:
            bug = UI_BUGS.get((id, key))
            marks = [pytest.mark.xfail(strict=True, reason=f"bug: {bug}")] if bug else []
            params.append(pytest.param(Case(id, method, path, key, body), id=f"{key or 'anonymous'}-{id}", marks=marks))
    return params


def data_paths(data: Path) -> set[str]:
    """Every path in the data directory but SQLite's write-ahead log and its index (``-wal``,
    ``-shm``): they come and go with the database's connections, whatever the request was."""
    return {str(p.relative_to(data)) for p in data.rglob("*") if not p.name.endswith(("-wal", "-shm"))}


@pytest.mark.parametrize("case", ui_params())
def test_no_5xx_nothing_leaked_nothing_stored(bad_input_world: BadInputWorld, case: Case) -> None:
    w = bad_input_world
    before, paths = world_state(w), data_paths(w.server.data)
    response = send_case(w, case._replace(path=case.path.replace("$data", str(w.server.data))))
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:500]}"
    assert not any(leak in response.content for leak in LEAKS), response.content[:500]
    assert not any(w.keys[k].encode() in response.content for k in ("admin", "acme", "globex", "pk"))
    assert_healthy(w.http)
    assert world_state(w) == before
    assert data_paths(w.server.data) == paths
    assert not list(w.server.data.parent.rglob("evil.txt"))


def test_afterwards_the_server_is_alive_and_nothing_changed(
    bad_input_world: BadInputWorld, bad_input_baseline: dict[str, Any]
) -> None:
    assert_alive_and_unchanged(bad_input_world, bad_input_baseline)
