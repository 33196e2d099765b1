"""Nothing under the UI's mount answers without a valid secret key (or the admin key).

Gradio's routes store uploads, serve files and run events for whoever calls them; on a server on
the internet that would be anonymous file hosting and free compute. :class:`KeyGate` is an ASGI
middleware in front of the mount (``prefix``) that lets a request through only when it carries

- the ``swaplora_ui`` cookie of a live :class:`ui.ui_sessions.UiSessions` session (a browser
  that signed in at ``<prefix>/sign-in``), or
- ``Authorization: Bearer <key>`` with a key the server accepts (``gradio_client`` and scripts);

and the server still accepts that key (re-checked with ``GET /v1/me`` every ``recheck_s``; a
revoked key stops working then). Publishable (website) keys are refused: they are public.

Otherwise a page request (``GET`` for HTML) is redirected to ``<prefix>/sign-in``; anything else
gets 401 in OpenAI's error shape. ``<prefix>/sign-in`` (GET: the form; POST: ``key=...``, at most
:data:`MAX_FORM_BYTES`, same-origin only) opens a session and sets an HttpOnly, SameSite=Lax
cookie (Secure over https) holding an opaque token; ``POST <prefix>/sign-out`` ends it. Failed
sign-ins count against the caller's address on the server (``X-Forwarded-For`` is passed on), so
the API's throttle of failed authentications holds through the UI too.

:data:`PUBLIC` (the web manifest and the icon) is open to all. Gradio's ``file=<url>`` and ``proxy=`` routes
(fetching remote URLs for the caller) get 403 for
everyone: the UI never uses them. A request let through carries the caller's user (``admin`` or
the tenant id) in ``scope["swaplora.ui_user"]``, which :meth:`KeyGate.user` hands to Gradio as its
``auth_dependency`` (so Gradio's own checks hold too); handlers get the key with
:func:`pass_for`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ui.api_client import ApiClient, ApiError
from ui.asgi_bits import read_capped, refusal
from ui.ui_sessions import UiPass, UiSessions

COOKIE = "swaplora_ui"
USER_SCOPE_KEY = "swaplora.ui_user"
MAX_FORM_BYTES = 4096
PUBLIC = ("/manifest.json", "/favicon.ico")
"""Static and harmless; browsers fetch a page's manifest without cookies."""
REMOTE_FETCH = re.compile(r"/(?:gradio_api/)?(?:file=https?:|file=//|proxy=)", re.IGNORECASE)

SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>swaplora — sign in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:10vh auto;padding:0 1rem}}
input,button{{font:inherit;padding:.5rem;width:100%;box-sizing:border-box;margin:.4rem 0}}
.error{{color:#b00020}}</style></head>
<body><h1>swaplora</h1><p>Sign in with a secret API key (<code>sk-swl-…</code>) or the admin key.</p>
<p class="error" role="alert">{error}</p>
<form method="post" action="{action}"><label>API key
<input name="key" type="password" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button></form></body></html>
"""


class KeyGate:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, api_url: str, prefix: str, sessions: UiSessions | None = None) -> None:
        self.app = app
        self.api_url = api_url
        self.prefix = prefix.rstrip("/")
        self.sessions = sessions or UiSessions()

    # ------------------------------------------------------------------ what handlers use

    @staticmethod
    def user(request: Request) -> str | None:
        """Gradio's ``auth_dependency``: the user this gate let through, else None (Gradio's 401)."""
        user: str | None = request.scope.get(USER_SCOPE_KEY)
        return user

    # ------------------------------------------------------------------ the middleware

    def _covers(self, path: str) -> bool:
        return not self.prefix or path == self.prefix or path.startswith(self.prefix + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not self._covers(path):
            await self.app(scope, receive, send)
            return
        response = await self._answer(scope, receive, path)
        if response is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await response(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008})

    async def _answer(self, scope: Scope, receive: Receive, path: str) -> Response | None:
        """The gate's own response, or None to let the request through (marked with its user)."""
        method = scope.get("method", "GET")
        headers = _headers(scope)
        if path == f"{self.prefix}/sign-in":
            if method == "POST":
                return await self._sign_in(scope, receive, headers)
            return _sign_in_page(self._action("sign-in"))
        if path == f"{self.prefix}/sign-out" and method == "POST":
            return self._sign_out(headers)
        if path[len(self.prefix) :] in PUBLIC and method in ("GET", "HEAD"):
            return None
        if REMOTE_FETCH.search(path[len(self.prefix) :]):
            return refusal(403, "The UI does not fetch remote URLs.", "forbidden")
        ui_pass = await self._let_through(headers, _client_address(scope))
        if ui_pass is not None:
            scope[USER_SCOPE_KEY] = ui_pass.user
            return None
        if method == "GET" and "text/html" in headers.get("accept", ""):
            return RedirectResponse(self._action("sign-in"), status_code=303)
        return refusal(
            401, f"Sign in at {self._action('sign-in')} or send 'Authorization: Bearer <key>'.", "invalid_api_key"
        )

    async def _let_through(self, headers: Mapping[str, str], address: str | None) -> UiPass | None:
        cookies = _cookies(headers)
        token = cookies.get(COOKIE)
        session = self.sessions.get(token)
        key = session.key if session else _bearer(headers.get("authorization"))
        if not key:
            return None
        if (held := self.sessions.checked(key)) is not None:
            return held
        try:
            checked = await self._verify(key, address)
        except ApiError as error:
            if error.status in (401, 403):
                self.sessions.forget_key(key)
            return None
        self.sessions.remember(checked)
        return checked

    async def _verify(self, key: str, address: str | None) -> UiPass:
        """Ask the server whose ``key`` is (raises its ApiError: 401, 403 publishable, 429)."""
        forwarded = {"X-Forwarded-For": address} if address else {}
        async with ApiClient(self.api_url, key, headers=forwarded) as api:
            me = await api.me()
        return UiPass(key=key, user="admin" if me["is_admin"] else str(me["tenant"]))

    async def _sign_in(self, scope: Scope, receive: Receive, headers: Mapping[str, str]) -> Response:
        if not _same_origin(headers):
            return refusal(403, "Sign in from this server's own page.", "forbidden")
        announced = headers.get("content-length") or "0"
        raw = (
            await read_capped(receive, MAX_FORM_BYTES)
            if announced.isdigit() and int(announced) <= MAX_FORM_BYTES
            else None
        )
        body = None if raw is None else raw.decode("utf-8", "replace")
        if body is None:
            return _sign_in_page(self._action("sign-in"), "The form is too large.", 413)
        key = (parse_qs(body, max_num_fields=4).get("key") or [""])[0].strip()
        if not key:
            return _sign_in_page(self._action("sign-in"), "Enter an API key.", 400)
        try:
            ui_pass = await self._verify(key, _client_address(scope))
        except ApiError as error:
            status = error.status if error.status and 400 <= error.status < 500 else 502
            return _sign_in_page(self._action("sign-in"), error.text, status)
        response = RedirectResponse(f"{self.prefix}/", status_code=303)
        response.set_cookie(
            COOKIE,
            self.sessions.open(ui_pass),
            max_age=int(self.sessions.lifetime_s),
            path=self.prefix or "/",
            httponly=True,
            samesite="lax",
            secure=scope.get("scheme") == "https",
        )
        return response

    def _sign_out(self, headers: Mapping[str, str]) -> Response:
        if not _same_origin(headers):
            return refusal(403, "Sign out from this server's own page.", "forbidden")
        self.sessions.close(_cookies(headers).get(COOKIE))
        response = RedirectResponse(self._action("sign-in"), status_code=303)
        response.delete_cookie(COOKIE, path=self.prefix or "/")
        return response

    def _action(self, name: str) -> str:
        return f"{self.prefix}/{name}"


def pass_for(sessions: UiSessions, headers: Mapping[str, str], cookies: Mapping[str, str]) -> UiPass | None:
    """The key a request the gate let through acts with (its cookie session's, or its bearer key)."""
    session = sessions.get(cookies.get(COOKIE))
    if session is not None:
        return session
    bearer = _bearer(headers.get("authorization"))
    return sessions.checked(bearer) if bearer else None


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookies(headers: Mapping[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no session
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _bearer(value: str | None) -> str | None:
    if not value or not value.lower().startswith("bearer "):
        return None
    return value[7:].strip() or None


def _client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _same_origin(headers: Mapping[str, str]) -> bool:
    """A browser's form post names its page's origin; it must be this host (no Origin: not a browser)."""
    origin = headers.get("origin")
    return origin is None or urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


def _sign_in_page(action: str, error: str = "", status: int = 200) -> HTMLResponse:
    page = SIGN_IN_PAGE.format(action=html.escape(action), error=html.escape(error))
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})
