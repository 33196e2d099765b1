"""What the UI's ASGI middlewares share: OpenAI-shaped refusals and a body read with a cap.

- :func:`refusal` is the JSON error every refusal under ``/ui`` answers with (the API's shape:
  ``{"error": {"message", "type", "param", "code"}}``).
- :func:`read_capped` reads a request body from ``receive`` and gives up (None) as soon as it
  passes ``limit`` bytes, so an oversized body is never held whole.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import Receive


def refusal(status: int, message: str, code: str) -> JSONResponse:
    kind = "authentication_error" if status == 401 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)


async def read_capped(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)
