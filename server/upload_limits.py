"""Size limits on request bodies: multipart uploads (adapters, files) and JSON bodies.

:func:`read_capped` reads a JSON body for the routes that take one: a declared Content-Length
over the limit is a 413 before a byte is read, and a chunked body (or a lying Content-Length)
is a 413 as soon as the running count passes the limit, so no body larger than the limit is
ever held in memory.

:func:`multipart_upload` refuses up front what can be refused from the headers (a declared
Content-Length over the limit: 413 ``upload_too_large``; a body that is not multipart/form-data:
415 ``unsupported_media_type``) and returns the request with its body stream capped, so that a
chunked upload or a lying Content-Length still ends in a 413 as soon as too many bytes arrive.
The cap allows :data:`MULTIPART_SLACK` over the file limit for boundaries and small fields;
routes check each file's own size against the limit with :func:`too_large`.

Both also bound the time a body may take (a slow sender holds a connection): 408
``request_timeout`` when no bytes arrive for ``body_idle_timeout_s`` seconds, or when, after that
long, the body has averaged less than ``min_body_bytes_per_s`` (the server's settings).
"""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.types import Message

from server.errors import APIError
from server.services import services_of

MULTIPART_SLACK = 64 * 1024
"""Room for boundaries, part headers and the small text fields on top of the file bytes."""


def too_large(limit: int) -> APIError:
    """The 413 for an upload over ``limit`` bytes."""
    return APIError(413, f"Upload is larger than the limit of {limit} bytes.", code="upload_too_large")


def too_slow(idle_s: float, min_rate: int) -> APIError:
    """The 408 for a body that stalls or trickles."""
    return APIError(
        408,
        f"The request body arrived too slowly (a pause over {idle_s:g} s, or under {min_rate} bytes/s on average).",
        code="request_timeout",
    )


def _clock(request: Request) -> tuple[float, int]:
    """(idle timeout, minimum average rate) from the server's settings."""
    settings = services_of(request).settings
    return settings.body_idle_timeout_s, settings.min_body_bytes_per_s


def _size_capped(request: Request, limit: int, error: APIError) -> Request:
    """The same request, but reading past ``limit`` body bytes raises ``error`` mid-stream, and a
    stalled or trickling body raises :func:`too_slow`."""
    received, started = 0, time.monotonic()
    idle_s, min_rate = _clock(request)

    async def receive() -> Message:
        nonlocal received
        try:
            message = await asyncio.wait_for(request.receive(), idle_s)
        except TimeoutError:
            raise too_slow(idle_s, min_rate) from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise error
            elapsed = time.monotonic() - started
            if message.get("more_body") and elapsed > idle_s and received < min_rate * (elapsed - idle_s):
                raise too_slow(idle_s, min_rate)
        return message

    return Request(request.scope, receive)


def _declared_over(request: Request, limit: int) -> bool:
    length = request.headers.get("content-length", "")
    return length.isdigit() and int(length) > limit


def body_too_large(limit: int) -> APIError:
    """The 413 for a JSON body over ``limit`` bytes."""
    return APIError(413, f"The request body is larger than the limit of {limit} bytes.", code="request_too_large")


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, or a 413 (see the module docstring) once it passes ``limit`` bytes."""
    if _declared_over(request, limit):
        raise body_too_large(limit)
    return await _size_capped(request, limit, body_too_large(limit)).body()


def multipart_upload(request: Request, limit: int, what: str) -> Request:
    """``request`` checked and capped for a multipart upload of at most ``limit`` file bytes.

    ``what`` names the upload in the 415 message (``"the adapter"``, ``"the file"``).
    """
    if _declared_over(request, limit + MULTIPART_SLACK):
        raise too_large(limit)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise APIError(415, f"Upload {what} as multipart/form-data.", code="unsupported_media_type")
    return _size_capped(request, limit + MULTIPART_SLACK, too_large(limit))
