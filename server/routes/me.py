"""``GET /v1/me``: who an API key belongs to, so a client (the UI) can sign in with a key alone.

Answers ``{"object": "principal", "is_admin": bool, "tenant": "<id>" | null}``; the admin has no
tenant. A missing or wrong key is the usual 401. Nothing else about the tenant is revealed here.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.tenancy.auth import authenticate


async def me(request: Request) -> JSONResponse:
    principal = authenticate(request)
    return JSONResponse({"object": "principal", "is_admin": principal.is_admin, "tenant": principal.tenant_id})


routes: list[Route] = [Route("/v1/me", me, methods=["GET"])]
