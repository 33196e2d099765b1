"""The UI's key gate on the live server, as a browser's form and a stranger meet it: signing in
with a real key opens the UI through an HttpOnly cookie, signing out closes it; a wrong key, a
publishable (public) key or no key opens nothing; failed sign-ins count against the caller's own
address in the API's throttle (passed on as ``X-Forwarded-For``)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.conftest import Server, auth

pytestmark = pytest.mark.integration

SIGN_IN = "/ui/sign-in"


def sign_in(http: httpx.Client, key: str, address: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    return http.post(SIGN_IN, data={"key": key}, headers=headers, follow_redirects=False)


def test_sign_in_opens_the_ui_and_sign_out_closes_it(server: Server, tenant_keys: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        assert browser.get("/ui/config").status_code == 401
        response = sign_in(browser, tenant_keys["acme"])
        assert response.status_code == 303 and response.headers["location"] == "/ui/"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/ui" in cookie
        assert tenant_keys["acme"] not in response.headers["set-cookie"]  # an opaque token, not the key
        assert browser.get("/ui/config").status_code == 200
        upload = browser.post("/ui/gradio_api/upload", files={"files": ("faq.csv", b"q,a\n", "text/csv")})
        assert upload.status_code == 200, upload.text
        out = browser.post("/ui/sign-out", follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == SIGN_IN
        assert browser.get("/ui/config").status_code == 401


@pytest.mark.parametrize(
    ("which", "status", "message"),
    [
        ("wrong", 401, "Incorrect API key provided."),
        ("publishable", 403, "publishable key"),
    ],
)
def test_keys_that_open_nothing(
    server: Server, http: httpx.Client, tenant_keys: dict[str, str], which: str, status: int, message: str
) -> None:
    key = "sk-swl-wrong-key"
    if which == "publishable":
        key = http.post("/v1/tenants/acme/keys", json={"kind": "publishable"}, headers=auth(server.admin_key)).json()[
            "api_key"
        ]
    with httpx.Client(base_url=server.url, timeout=60) as stranger:
        response = sign_in(stranger, key, address="198.51.100.1")
        assert response.status_code == status and message in response.text and "set-cookie" not in response.headers
        anonymous = stranger.post(
            "/ui/gradio_api/upload",
            files={"files": ("x.txt", b"x", "text/plain")},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert anonymous.status_code == 401


def test_failed_sign_ins_are_throttled_per_address(server: Server, tenant_keys: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as stranger:
        statuses = [sign_in(stranger, f"sk-swl-guess-{i}", address="203.0.113.7").status_code for i in range(25)]
        assert statuses[0] == 401 and statuses[-1] == 429, statuses
        throttled = sign_in(stranger, tenant_keys["acme"], address="203.0.113.7")
        assert throttled.status_code == 429 and "Too many failed authentications" in throttled.text
        elsewhere = sign_in(stranger, tenant_keys["acme"], address="203.0.113.8")
        assert elsewhere.status_code == 303
