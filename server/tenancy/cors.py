"""CORS for browser calls with publishable keys, per tenant ``allowed_origins``.

Contract:

- Only :data:`CORS_PATHS` (chat and the widget config: what a publishable key may call) ever
  answer cross-origin; every other path gets no CORS header at all, so browsers on other sites
  cannot read the admin or tenant API.
- A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) carries no key, so it is
  judged by the tenant named in the ``tenant`` query parameter (the widget always sends it); a
  preflight that names no tenant is refused (judging it would mean reading every tenant's
  settings for a stranger, and telling whether any tenant lists an origin). Allowed: 204
  echoing that one origin.
  Refused: 403 in OpenAI's error shape and no ``Access-Control-Allow-Origin``.
- An actual request gets ``Access-Control-Allow-Origin: <origin>`` only when it carries a
  publishable key whose tenant lists the origin (plus ``Retry-After`` exposed, so the widget can
  say when to retry). ``*`` is never sent, and neither is ``Access-Control-Allow-Credentials``:
  keys travel in the Authorization header, never in cookies. ``Vary: Origin`` always.
- :func:`require_allowed_origin` is the route side of the rule: a publishable key from a page
  whose origin the tenant does not list (or with no ``Origin`` at all) gets 403
  ``origin_not_allowed`` before anything runs.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from anyio import to_thread
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.ids import InvalidId, validate_tenant_id
from server.errors import APIError
from server.tenancy.auth import Principal, bearer_key
from server.tenancy.tenant_settings import TenantSettings
from server.tenancy.tenants import TenantRegistry

CORS_PATHS = frozenset({"/v1/chat/completions", "/v1/widget/config", "/v1/feedback"})
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "authorization, content-type",
    "Access-Control-Max-Age": "600",
}


def origin_not_allowed() -> APIError:
    return APIError(
        403,
        "This website is not allowed to use this assistant (its origin is not in the tenant's allowed_origins).",
        code="origin_not_allowed",
    )


def require_allowed_origin(request: Request, principal: Principal, settings: TenantSettings) -> None:
    """403 unless a publishable-key request comes from one of the tenant's allowed origins."""
    if principal.is_publishable and not settings.allows_origin(request.headers.get("origin")):
        raise origin_not_allowed()


class TenantCORSMiddleware:
    """Pure ASGI middleware, so streamed (SSE) responses pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in CORS_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        registry = scope["app"].state.services.tenants
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            allowed = await to_thread.run_sync(_preflight_allowed, registry, scope, origin)
            await _preflight(allowed, origin, scope, receive, send)
            return
        allowed = await to_thread.run_sync(_request_allowed, registry, bearer_key(Request(scope)), origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out.add_vary_header("Origin")
                if allowed:
                    out["Access-Control-Allow-Origin"] = origin
                    out["Access-Control-Expose-Headers"] = "Retry-After"
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _preflight_allowed(registry: TenantRegistry, scope: Scope, origin: str) -> bool:
    tenants = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("tenant")
    if not tenants:
        return False  # see the module docstring: no scan over every tenant for a stranger
    try:
        tenant_id = validate_tenant_id(tenants[0])
    except InvalidId:
        return False
    return registry.get_tenant(tenant_id) is not None and registry.get_settings(tenant_id).allows_origin(origin)


def _request_allowed(registry: TenantRegistry, key: str | None, origin: str) -> bool:
    owner = registry.authenticate_key(key) if key else None
    if owner is None or owner.kind != "publishable":
        return False
    return registry.get_settings(owner.tenant.id).allows_origin(origin)


async def _preflight(allowed: bool, origin: str, scope: Scope, receive: Receive, send: Send) -> None:
    if allowed:
        response = Response(
            status_code=204, headers={**PREFLIGHT_HEADERS, "Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        )
    else:
        response = origin_not_allowed().response()
        response.headers["Vary"] = "Origin"
    await response(scope, receive, send)
