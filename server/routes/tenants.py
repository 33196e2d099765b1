"""Tenant management: ``POST/GET /v1/tenants``, ``GET/PATCH /v1/tenants/{id}``.
``GET`` also shows the tenant's ``usage`` against its disk quotas (:mod:`server.tenancy.quotas`).

Creating and listing tenants needs the admin key; a tenant may read and change its own record
(with a secret key), and any other tenant id answers 404 whether or not it exists. A new
tenant's API key is in the creation response and nowhere else, ever. A tenant object carries
its settings (:mod:`server.tenancy.tenant_settings`); PATCH validates the whole result and either stores
all of it or nothing (400 naming the field).

Also home of :func:`read_json_object`, the one JSON-body reader the management routes share.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.ids import InvalidId, parse_model_id, validate_tenant_id
from adapters.store import AdapterNotFound
from server.errors import APIError, bad_request, not_found
from server.services import Services, services_of
from server.tenancy.auth import Principal, authenticate, can_use_tenant, require_admin
from server.tenancy.tenant_settings import (
    TenantLimits,
    TenantSettings,
    check_default_model,
    check_limits,
    merge_patch,
    settings_error,
)
from server.tenancy.tenants import Tenant, TenantExists, TenantNotFound
from server.upload_limits import read_capped

MAX_JSON_BYTES = 64 * 1024
"""Management bodies are a few fields; a bigger one is a mistake or abuse."""


async def read_json_object(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The request body as a JSON object with only ``allowed`` keys, or a 400 saying what is wrong."""
    body = await read_capped(request, MAX_JSON_BYTES)
    try:
        # pydantic's parser, as the chat route's: it also refuses lone surrogates (no text can hold
        # them) and nesting deep enough to recurse; NaN passes to the fields' own checks, which name it
        data = from_json(body)
    except ValueError:
        raise bad_request("The request body must be valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise bad_request(f"Unknown field {unknown[0]!r}.", param=unknown[0])
    return data


def tenant_object(tenant: Tenant, settings: TenantSettings | None = None) -> dict[str, Any]:
    settings = settings or TenantSettings()
    return {
        "id": tenant.id,
        "object": "tenant",
        "created_at": tenant.created_at,
        **settings.model_dump(mode="json"),
        "effective_limits": settings.effective_limits.model_dump(mode="json"),
    }


def owned_tenant(request: Request, principal: Principal) -> Tenant:
    """The path's tenant if the caller may see it, else the 404 a missing one gets."""
    tenant_id = request.path_params["tenant_id"]
    tenant = None
    if can_use_tenant(principal, tenant_id):
        tenant = services_of(request).tenants.get_tenant(tenant_id)
    if tenant is None:
        raise not_found(f"Tenant {tenant_id!r} not found.", param="id")
    return tenant


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
        tenant, key = await run_in_threadpool(services_of(request).tenants.create_tenant, tenant_id)
    except TenantExists as exc:
        raise APIError(409, str(exc), param="id", code="tenant_exists") from None
    ceilings = services_of(request).settings.default_limit_ceilings
    settings = None
    if ceilings != TenantLimits():  # the server's defaults, when the operator set any
        settings = await run_in_threadpool(
            services_of(request).tenants.update_settings,
            tenant.id,
            lambda current: current.model_copy(update={"limit_ceilings": ceilings}),
        )
    return JSONResponse({**tenant_object(tenant, settings), "api_key": key}, status_code=201)


async def list_tenants(request: Request) -> JSONResponse:
    require_admin(authenticate(request))
    registry = services_of(request).tenants

    def listing() -> list[dict[str, Any]]:
        return [tenant_object(t, registry.get_settings(t.id)) for t in registry.list_tenants()]

    return JSONResponse({"object": "list", "data": await run_in_threadpool(listing)})


async def get_tenant(request: Request) -> JSONResponse:
    principal = authenticate(request)
    services = services_of(request)

    def read() -> dict[str, Any]:
        tenant = owned_tenant(request, principal)
        return {
            **tenant_object(tenant, services.tenants.get_settings(tenant.id)),
            "usage": services.usage(tenant.id).to_dict(),
        }

    return JSONResponse(await run_in_threadpool(read))


def _check_model_exists(services: Services, settings: TenantSettings) -> None:
    ref = parse_model_id(settings.default_model)
    if ref is None:
        return
    try:
        services.store.resolve(ref)
    except AdapterNotFound:
        raise bad_request(
            f"default_model {settings.default_model!r} is not one of this tenant's adapters.",
            param="default_model",
            code="model_not_found",
        ) from None


def _check_retrieval_files(services: Services, patch: dict[str, Any], tenant: str) -> None:
    """Files newly named for retrieval must be the tenant's (one deleted since it was named just
    retrieves nothing: a stale id never blocks other changes). Checked before the settings'
    transaction (the files live in the same database); the types are the model's to check."""
    retrieval = patch.get("retrieval")
    files = retrieval.get("files") if isinstance(retrieval, dict) else None
    if not isinstance(files, list):
        return
    named = set(services.tenants.get_settings(tenant).retrieval.files)
    for file_id in sorted({f for f in files if isinstance(f, str)} - named):
        if services.files.get(file_id, tenant) is None:
            raise bad_request(
                f"retrieval.files names {file_id!r}, which is not one of this tenant's files.",
                param="retrieval.files",
                code="file_not_found",
            )


async def update_tenant(request: Request) -> JSONResponse:
    principal = authenticate(request)
    patch = await read_json_object(request, frozenset(TenantSettings.model_fields))
    services = services_of(request)
    tenant = await run_in_threadpool(owned_tenant, request, principal)

    def change(current: TenantSettings) -> TenantSettings:
        try:
            updated = TenantSettings.model_validate(merge_patch(current, patch))
        except ValidationError as exc:
            raise settings_error(exc) from None
        check_default_model(updated, tenant.id)
        check_limits(
            updated,
            principal.is_admin,
            patch,
            services.settings.visitor_limit_ceilings,
            services.settings.publishable_max_tokens,
        )
        if updated.default_model != current.default_model:
            _check_model_exists(services, updated)
        return updated

    def update() -> dict[str, Any]:
        _check_retrieval_files(services, patch, tenant.id)
        try:
            return tenant_object(tenant, services.tenants.update_settings(tenant.id, change))
        except TenantNotFound:
            raise not_found(f"Tenant {tenant.id!r} not found.", param="id") from None

    return JSONResponse(await run_in_threadpool(update))


routes: list[Route] = [
    Route("/v1/tenants", create_tenant, methods=["POST"]),
    Route("/v1/tenants", list_tenants, methods=["GET"]),
    Route("/v1/tenants/{tenant_id}", get_tenant, methods=["GET"]),
    Route("/v1/tenants/{tenant_id}", update_tenant, methods=["PATCH"]),
]
