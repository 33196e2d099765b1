"""The website widget: ``GET /widget.js`` and ``GET /v1/widget/config?tenant=<id>``.

Contract:

- ``/widget.js`` is the static script in ``server/static/widget.js`` (no external CDN, no build
  step), served as ``text/javascript`` with an ``ETag`` (a ``304`` for ``If-None-Match``) and a
  one-hour public cache, loadable from any site. A page embeds it with
  ``<script src="https://HOST/widget.js" data-tenant="acme" data-key="pk-swl-..." async></script>``.
- ``/v1/widget/config`` tells the widget the tenant's branding, the model to chat with and whether
  to list an answer's sources (``show_citations``: retrieval on, with its ``show_citations``). It
  takes the tenant's publishable key (from an allowed origin only, 403 otherwise) or its secret
  key; another tenant's id answers 404. It reveals nothing a page that embeds the widget
  does not show anyway, and never the system prompt or limits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.errors import bad_request, not_found
from server.services import services_of
from server.tenancy.auth import authenticate, can_use_tenant
from server.tenancy.cors import require_allowed_origin

WIDGET_JS = Path(__file__).resolve().parents[1] / "static" / "widget.js"
_SCRIPT = WIDGET_JS.read_bytes()
_ETAG = '"' + hashlib.sha256(_SCRIPT).hexdigest()[:32] + '"'
_SCRIPT_HEADERS = {
    "Cache-Control": "public, max-age=3600",
    "ETag": _ETAG,
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
}


async def widget_js(request: Request) -> Response:
    if _ETAG in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=_SCRIPT_HEADERS)
    return Response(_SCRIPT, media_type="text/javascript; charset=utf-8", headers=_SCRIPT_HEADERS)


async def widget_config(request: Request) -> JSONResponse:
    principal = authenticate(request, allow_publishable=True)
    tenant_id = request.query_params.get("tenant")
    if not tenant_id:
        raise bad_request("Missing query parameter 'tenant'.", param="tenant")
    registry = services_of(request).tenants
    tenant = await run_in_threadpool(registry.get_tenant, tenant_id) if can_use_tenant(principal, tenant_id) else None
    if tenant is None:
        raise not_found(f"Tenant {tenant_id!r} not found.", param="tenant")
    settings = await run_in_threadpool(registry.get_settings, tenant.id)
    require_allowed_origin(request, principal, settings)
    return JSONResponse(
        {
            "object": "widget.config",
            "tenant": tenant.id,
            "display_name": settings.display_name or tenant.id,
            "brand_color": settings.brand_color,
            "logo_url": settings.logo_url,
            "greeting": settings.greeting,
            "model": settings.default_model,
            "show_citations": settings.retrieval.enabled and settings.retrieval.show_citations,
        },
        headers={"Cache-Control": "no-store"},
    )


routes: list[Route] = [
    Route("/widget.js", widget_js, methods=["GET"]),
    Route("/v1/widget/config", widget_config, methods=["GET"]),
]
