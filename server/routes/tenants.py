"""Tenant management: ``POST /v1/tenants``, ``GET /v1/tenants``, ``GET /v1/tenants/{id}``.

Creating and listing tenants needs the admin key; a tenant may read its own record, and any
other tenant id answers 404 whether or not it exists. A new tenant's API key is in the creation
response and nowhere else, ever.

Also home of :func:`read_json_object`, the one JSON-body reader the management routes share.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.ids import InvalidId, validate_tenant_id
from server.auth import authenticate, can_use_tenant, require_admin
from server.errors import APIError, bad_request, not_found
from server.tenants import Tenant, TenantExists

MAX_JSON_BYTES = 64 * 1024
"""Management bodies are a few fields; a bigger one is a mistake or abuse."""


async def read_json_object(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The request body as a JSON object with only ``allowed`` keys, or a 400 saying what is wrong."""
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise APIError(413, "Request body is too large.", code="request_too_large")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad_request("The request body must be valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise bad_request(f"Unknown field {unknown[0]!r}.", param=unknown[0])
    return data


def tenant_object(tenant: Tenant) -> dict[str, Any]:
    return {"id": tenant.id, "object": "tenant", "created_at": tenant.created_at}


async def create_tenant(request: Request) -> JSONResponse:
    require_admin(authenticate(request))
    data = await read_json_object(request, frozenset({"id"}))
    if "id" not in data:
        raise bad_request("Missing required field 'id'.", param="id")
    try:
        tenant_id = validate_tenant_id(data["id"])
    except InvalidId as exc:
        raise bad_request(str(exc), param="id", code="invalid_id") from None
    try:
        tenant, key = await run_in_threadpool(request.app.state.services.tenants.create_tenant, tenant_id)
    except TenantExists as exc:
        raise APIError(409, str(exc), param="id", code="tenant_exists") from None
    return JSONResponse({**tenant_object(tenant), "api_key": key}, status_code=201)


async def list_tenants(request: Request) -> JSONResponse:
    require_admin(authenticate(request))
    tenants = await run_in_threadpool(request.app.state.services.tenants.list_tenants)
    return JSONResponse({"object": "list", "data": [tenant_object(t) for t in tenants]})


async def get_tenant(request: Request) -> JSONResponse:
    principal = authenticate(request)
    tenant_id = request.path_params["tenant_id"]
    tenant = None
    if can_use_tenant(principal, tenant_id):
        tenant = await run_in_threadpool(request.app.state.services.tenants.get_tenant, tenant_id)
    if tenant is None:
        raise not_found(f"Tenant {tenant_id!r} not found.", param="id")
    return JSONResponse(tenant_object(tenant))


routes: list[Route] = [
    Route("/v1/tenants", create_tenant, methods=["POST"]),
    Route("/v1/tenants", list_tenants, methods=["GET"]),
    Route("/v1/tenants/{tenant_id}", get_tenant, methods=["GET"]),
]
