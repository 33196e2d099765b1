"""``GET /v1/models`` and ``GET /v1/models/{model}``: ``base`` plus the adapters the caller may use.

A tenant sees its own adapters (as ``tenant/name``, served at their current version); the admin
sees every tenant's. Another tenant's id answers 404 ``model_not_found``, exactly like an id that
does not exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.ids import BASE_MODEL_ID, InvalidId, parse_model_id
from adapters.manifest import AdapterManifest
from adapters.store import AdapterNotFound, AdapterStore
from server.errors import model_not_found
from server.services import services_of
from server.tenancy.auth import authenticate, can_use_tenant


def _created(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _base_entry(request: Request) -> dict[str, Any]:
    return {"id": BASE_MODEL_ID, "object": "model", "created": request.app.state.started_at, "owned_by": "swaplora"}


def _adapter_entry(manifest: AdapterManifest) -> dict[str, Any]:
    return {
        "id": manifest.adapter_id,
        "object": "model",
        "created": _created(manifest.created_at),
        "owned_by": manifest.tenant,
        "version": manifest.version,
    }


def _list(store: AdapterStore, tenant: str | None) -> list[dict[str, Any]]:
    entries = []
    for summary in store.list_adapters(tenant):
        try:
            entries.append(_adapter_entry(store.manifest(summary.tenant, summary.name, summary.current_version)))
        except AdapterNotFound:  # deleted between listing and reading
            continue
    return entries


async def list_models(request: Request) -> JSONResponse:
    principal = authenticate(request)
    services = services_of(request)
    adapters = await run_in_threadpool(_list, services.store, None if principal.is_admin else principal.tenant_id)
    return JSONResponse({"object": "list", "data": [_base_entry(request), *adapters]})


async def retrieve_model(request: Request) -> JSONResponse:
    principal = authenticate(request)
    model = request.path_params["model"]
    if not request.scope["path"].endswith(model):
        # The {model:path} pattern ends in '$', which also matches before a trailing newline:
        # 'acme/support\n' is that (missing) id, not acme/support.
        raise model_not_found(request.scope["path"].rsplit("/v1/models/", 1)[-1])
    if model == BASE_MODEL_ID:
        return JSONResponse(_base_entry(request))
    try:
        ref = parse_model_id(model)
    except InvalidId:
        raise model_not_found(model) from None
    if ref is None or not can_use_tenant(principal, ref.tenant):
        raise model_not_found(model)
    try:
        resolved = await run_in_threadpool(services_of(request).store.resolve, ref)
    except AdapterNotFound:
        raise model_not_found(model) from None
    entry = _adapter_entry(resolved.manifest)
    entry["id"] = model
    return JSONResponse(entry)


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
]
