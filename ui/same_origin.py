"""The UI answers no cross-origin requests: Gradio's CORS headers are taken off under its mount.

Gradio reflects any ``Origin`` with ``Access-Control-Allow-Credentials: true`` when the Host is
not localhost, so a page on any site could drive a signed-in user's UI session. The UI is only
ever used from its own pages, which need no CORS at all. :class:`SameOriginOnly` wraps the app
that holds the mount: under ``prefix`` a CORS preflight gets 403 and every response loses its
``Access-Control-*`` headers; other paths (the API, whose CORS is :mod:`server.tenancy.cors`'s) pass
untouched.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SameOriginOnly:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    def _covers(self, path: str) -> bool:
        return not self.prefix or path == self.prefix or path.startswith(self.prefix + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._covers(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if scope.get("method") == "OPTIONS" and b"access-control-request-method" in headers:
            await PlainTextResponse("Cross-origin requests to the UI are not allowed.", 403)(scope, receive, send)
            return

        async def send_without_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (k, v) for k, v in message.get("headers", []) if not k.lower().startswith(b"access-control-")
                ]
            await send(message)

        await self.app(scope, receive, send_without_cors)
