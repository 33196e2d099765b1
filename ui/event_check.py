"""Gradio event requests that name no event of the UI are a 4xx here, not a 500 inside Gradio.

Gradio answers an unknown ``api_name`` (``run/``, ``call/``, ``api/``) or ``fn_index``
(``queue/join``) with an unhandled 500, and ``queue/data`` for an unknown session starts a 200
and cuts it off. :class:`EventCheck` sits behind the key gate, in front of the mount at
``prefix``, and checks against the Blocks' own events first:

- ``POST <prefix>/gradio_api/{run,call,api}/<name>``: 404 unless ``name`` is an event's api name;
- ``POST <prefix>/gradio_api/queue/join``: the JSON body (at most :data:`MAX_EVENT_BYTES`, else
  413) must name an existing ``fn_index`` and a well-formed ``session_hash``; the body is then
  handed on unchanged;
- ``GET <prefix>/gradio_api/queue/data``: ``session_hash`` must be well-formed and have joined.

Refusals are OpenAI-shaped JSON errors, like every other refusal of the server.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

import gradio as gr
from pydantic_core import from_json
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ui.asgi_bits import read_capped, refusal

MAX_EVENT_BYTES = 4 * 1024 * 1024
"""An event's inputs: text and references to files uploaded before (uploads go to /upload)."""
SESSION_HASH = re.compile(r"[A-Za-z0-9_-]{1,64}")
NAMED_CALL = re.compile(r"/gradio_api/(?:run|call|api)/([^/]+)/?")


class EventCheck:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, prefix: str, blocks: gr.Blocks) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self.blocks = blocks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefix + "/gradio_api/"):
            await self.app(scope, receive, send)
            return
        tail, method = path[len(self.prefix) :], scope.get("method")
        refused: JSONResponse | None = None
        if method == "POST" and (named := NAMED_CALL.fullmatch(tail)):
            if named.group(1) not in self._api_names():
                refused = refusal(404, f"The UI has no event named {named.group(1)[:64]!r}.", "not_found")
        elif method == "POST" and tail == "/gradio_api/queue/join":
            body = await read_capped(receive, MAX_EVENT_BYTES)
            refused = self._check_join(body)
            if refused is None:
                receive = _replay(body or b"", receive)
        elif method == "GET" and tail == "/gradio_api/queue/data":
            refused = self._check_session(_query(scope).get("session_hash"), joined=True)
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _api_names(self) -> set[str]:
        return {fn.api_name for fn in self.blocks.fns.values() if isinstance(fn.api_name, str)}

    def _check_join(self, body: bytes | None) -> JSONResponse | None:
        if body is None:
            return refusal(413, f"An event's inputs may be at most {MAX_EVENT_BYTES} bytes.", "request_too_large")
        try:
            event: Any = from_json(body, allow_inf_nan=False)
        except ValueError:
            return refusal(400, "The event must be a JSON object.", "invalid_json")
        if not isinstance(event, dict):
            return refusal(400, "The event must be a JSON object.", "invalid_json")
        fn_index = event.get("fn_index")
        if type(fn_index) is not int or fn_index not in self.blocks.fns:
            return refusal(404, "The UI has no such event (fn_index).", "not_found")
        return self._check_session(event.get("session_hash"), joined=False)

    def _check_session(self, session_hash: object, joined: bool) -> JSONResponse | None:
        if not isinstance(session_hash, str) or not SESSION_HASH.fullmatch(session_hash):
            return refusal(400, "session_hash must be 1-64 letters, digits, '_' or '-'.", "invalid_request")
        queue = getattr(self.blocks, "_queue", None)
        pending = getattr(queue, "pending_messages_per_session", None)
        if joined and pending is not None and session_hash not in pending:
            return refusal(404, "No event of this session is waiting.", "not_found")
        return None


def _query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"), max_num_fields=20)
    return {name: values[0] for name, values in parsed.items()}


def _replay(body: bytes, then: Receive) -> Receive:
    """A ``receive`` that hands on ``body`` once, then whatever ``then`` (the client) sends."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await then()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
