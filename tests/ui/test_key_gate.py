"""The key gate in front of the UI, without a model: what a caller without a key gets (nothing
stored, nothing computed, nothing fetched), the sign-in form's bounds, and the session store's
lifetime and bounds. The mount is real (Starlette + Gradio through TestClient); the API URL points
nowhere, so a key the gate has not already accepted cannot be verified. Sign-in with real keys
against a live server is in ``tests/ui/test_ui_gate_http.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from ui.app import mount_ui
from ui.key_gate import COOKIE, MAX_FORM_BYTES
from ui.ui_sessions import UiPass, UiSessions

NOWHERE = "http://127.0.0.1:9"
KEY = "sk-swl-accepted"


@pytest.fixture(scope="module")
def sessions() -> UiSessions:
    held = UiSessions()
    held.remember(UiPass(key=KEY, user="acme"))
    return held


@pytest.fixture(scope="module")
def client(sessions: UiSessions) -> Iterator[TestClient]:
    with TestClient(mount_ui(Starlette(), NOWHERE, "/ui", sessions=sessions)) as test_client:
        yield test_client


def uploads_dir() -> Path:
    return Path(gr.utils.get_upload_folder())


def stored_uploads() -> set[Path]:
    return set(uploads_dir().rglob("*")) if uploads_dir().exists() else set()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/ui/config"),
        ("GET", "/ui/gradio_api/info"),
        ("POST", "/ui/gradio_api/queue/join"),
        ("GET", "/ui/gradio_api/queue/data?session_hash=x"),
        ("POST", "/ui/gradio_api/run/sign_in"),
        ("POST", "/ui/gradio_api/call/sign_in"),
        ("GET", "/ui/gradio_api/file=/tmp/x.txt"),
        ("GET", "/ui/assets/index.js"),
        ("GET", "/ui/gradio_api/upload_progress?upload_id=x"),
    ],
)
def test_nothing_answers_without_a_key(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and "/ui/sign-in" in error["message"]


def test_an_anonymous_upload_stores_nothing(client: TestClient) -> None:
    before = stored_uploads()
    response = client.post("/ui/gradio_api/upload", files={"files": ("a.txt", b"free hosting", "text/plain")})
    assert response.status_code == 401 and stored_uploads() == before
    wrong = client.post(
        "/ui/gradio_api/upload",
        files={"files": ("a.txt", b"x", "text/plain")},
        headers={"Authorization": "Bearer sk-swl-not-known"},
    )  # unverifiable: refused
    assert wrong.status_code == 401 and stored_uploads() == before


def test_a_key_lets_gradio_through(client: TestClient) -> None:
    signed = {"Authorization": f"Bearer {KEY}"}
    assert client.get("/ui/config", headers=signed).status_code == 200
    response = client.post("/ui/gradio_api/upload", files={"files": ("a.txt", b"mine", "text/plain")}, headers=signed)
    assert response.status_code == 200, response.text
    stored = response.json()[0]
    assert client.get(f"/ui/gradio_api/file={stored}", headers=signed).status_code == 200
    assert client.get(f"/ui/gradio_api/file={stored}").status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/ui/gradio_api/file=https://example.com/x.png",
        "/ui/gradio_api/file=http:/x",
        "/ui/gradio_api/proxy=https://example.com/x",
        "/ui/file=//example.com/x",
    ],
)
def test_remote_fetches_are_refused_even_with_a_key(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_a_browser_without_a_session_is_sent_to_sign_in(client: TestClient) -> None:
    response = client.get("/ui/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/ui/sign-in"
    page = client.get("/ui/sign-in")
    assert page.status_code == 200 and 'action="/ui/sign-in"' in page.text and 'type="password"' in page.text
    stale = client.get("/ui/", headers={"Accept": "text/html", "Cookie": f"{COOKIE}=forged"}, follow_redirects=False)
    assert stale.status_code == 303


def test_sign_in_form_is_bounded_and_same_origin(client: TestClient) -> None:
    empty = client.post("/ui/sign-in", data={"key": "  "})
    assert empty.status_code == 400 and "Enter an API key" in empty.text
    huge = client.post(
        "/ui/sign-in",
        content=b"key=" + b"x" * MAX_FORM_BYTES,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 413
    foreign = client.post("/ui/sign-in", data={"key": KEY}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    unreachable = client.post("/ui/sign-in", data={"key": "sk-swl-whatever"})
    assert unreachable.status_code == 502 and "Cannot reach the API server" in unreachable.text
    assert COOKIE not in unreachable.cookies


def test_an_accepted_key_is_checked_again_after_recheck_s() -> None:
    now = [0.0]
    held = UiSessions(recheck_s=5, clock=lambda: now[0])
    held.remember(UiPass(key=KEY, user="acme"))
    with TestClient(
        mount_ui(Starlette(), NOWHERE, "/ui", sessions=held), headers={"Authorization": f"Bearer {KEY}"}
    ) as fresh:
        assert fresh.get("/ui/config").status_code == 200
        now[0] = 6  # the server (unreachable here) must be asked again: no answer, no entry
        assert fresh.get("/ui/config").status_code == 401


def test_sessions_expire_and_are_bounded() -> None:
    now = [0.0]
    held = UiSessions(lifetime_s=10, recheck_s=5, max_sessions=2, clock=lambda: now[0])
    tokens = [held.open(UiPass(key=f"k{i}", user="acme")) for i in range(3)]
    assert held.get(tokens[0]) is None and held.get(tokens[2]) == UiPass("k2", "acme")  # the oldest went
    assert held.checked("k2") is not None
    now[0] = 6
    assert held.checked("k2") is None and held.get(tokens[2]) is not None  # re-checked, still signed in
    now[0] = 11
    assert held.get(tokens[2]) is None
    token = held.open(UiPass(key="k9", user="acme"))
    held.forget_key("k9")
    assert held.get(token) is None and held.checked("k9") is None
