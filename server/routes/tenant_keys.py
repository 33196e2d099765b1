"""A tenant's API keys: ``POST/GET /v1/tenants/{id}/keys``, ``DELETE /v1/tenants/{id}/keys/{key_id}``.

Contract: the admin, or the tenant itself with a secret key, creates keys of kind ``secret``
(``sk-swl-...``, the full tenant API) or ``publishable`` (``pk-swl-...``, the website widget:
chat only, from an allowed origin, with the default model). The new key is in the creation
response and nowhere else; listings show id, prefix, kind and dates, never the key. Revocation
takes effect from the next request. Another tenant's id answers 404 like a missing one.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.errors import bad_request, not_found
from server.routes.tenants import owned_tenant, read_json_object
from server.services import services_of
from server.tenancy.auth import authenticate
from server.tenancy.tenants import KEY_KINDS, ApiKeyInfo


def key_object(info: ApiKeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "object": "api_key",
        "tenant": info.tenant_id,
        "kind": info.kind,
        "prefix": info.key_prefix,
        "created_at": info.created_at,
        "revoked_at": info.revoked_at,
    }


async def create_key(request: Request) -> JSONResponse:
    principal = authenticate(request)
    data = await read_json_object(request, frozenset({"kind"}))
    kind = data.get("kind")
    if kind not in KEY_KINDS:
        raise bad_request(f"'kind' must be one of {', '.join(map(repr, KEY_KINDS))}.", param="kind")
    tenant = await run_in_threadpool(owned_tenant, request, principal)
    info, key = await run_in_threadpool(services_of(request).tenants.create_key, tenant.id, kind)
    return JSONResponse({**key_object(info), "api_key": key}, status_code=201)


async def list_keys(request: Request) -> JSONResponse:
    principal = authenticate(request)
    tenant = await run_in_threadpool(owned_tenant, request, principal)
    keys = await run_in_threadpool(services_of(request).tenants.list_keys, tenant.id)
    return JSONResponse({"object": "list", "data": [key_object(info) for info in keys]})


async def revoke_key(request: Request) -> JSONResponse:
    principal = authenticate(request)
    tenant = await run_in_threadpool(owned_tenant, request, principal)
    key_id = request.path_params["key_id"]
    revoked = await run_in_threadpool(services_of(request).tenants.revoke_key, tenant.id, key_id)
    if not revoked:
        raise not_found(f"No active key {key_id!r} for tenant {tenant.id!r}.", param="key_id", code="key_not_found")
    return JSONResponse({"id": key_id, "object": "api_key", "deleted": True})


routes: list[Route] = [
    Route("/v1/tenants/{tenant_id}/keys", create_key, methods=["POST"]),
    Route("/v1/tenants/{tenant_id}/keys", list_keys, methods=["GET"]),
    Route("/v1/tenants/{tenant_id}/keys/{key_id}", revoke_key, methods=["DELETE"]),
]
