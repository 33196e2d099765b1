"""Adapter upload, listing, versions, rollback and deletion under ``/v1/adapters``.

Contract:

- ``POST /v1/adapters`` (multipart): field ``name``, files (field ``files``, repeated)
  ``adapter_config.json`` and ``adapter_model.safetensors``; the admin also sends ``tenant``.
  The upload is size-capped while it streams (``settings.max_upload_bytes``, 413), spooled to
  a private temp dir under ``<data>/tmp``, validated against the loaded base off the event loop,
  then published as the adapter's next version, which becomes current at once. Any refusal is
  a 4xx in OpenAI's error shape and leaves the store untouched; the temp dir always goes.
  While the base is still loading the answer is 503 with ``Retry-After``.
- A tenant sees only its own adapters; another tenant's adapter answers 404 exactly like a
  missing one. The admin sees all of them.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.base_model import ServedBase
from adapters.ids import InvalidId, validate_adapter_name, validate_tenant_id
from adapters.manifest import AdapterManifest, sha256_file
from adapters.store import CONFIG_FILE, WEIGHTS_FILE, AdapterNotFound, AdapterStore
from adapters.validation import AdapterValidationError, validate_adapter
from server.errors import APIError, bad_request, model_loading, not_found
from server.routes.tenants import read_json_object
from server.services import services_of
from server.tenancy import quotas
from server.tenancy.auth import Principal, authenticate, can_use_tenant
from server.upload_limits import multipart_upload, too_large

UPLOAD_FILES = (CONFIG_FILE, WEIGHTS_FILE)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def adapter_not_found(exc: AdapterNotFound) -> APIError:
    """The 404 for a store miss; its text is the store's, so a foreign adapter reads the same."""
    return not_found(str(exc), code="adapter_not_found")


def _adapter_not_found(tenant: str, name: str) -> APIError:
    return adapter_not_found(AdapterNotFound.adapter(tenant, name))


def owned_adapter(principal: Principal, tenant: str, name: str) -> tuple[str, str]:
    """Path parameters the caller may touch, else the same 404 a missing adapter gets."""
    try:
        validate_tenant_id(tenant)
        validate_adapter_name(name)
    except InvalidId:
        raise _adapter_not_found(tenant, name) from None
    if not can_use_tenant(principal, tenant):
        raise _adapter_not_found(tenant, name)
    return tenant, name


def _store(request: Request) -> AdapterStore:
    return services_of(request).store


def version_object(manifest: AdapterManifest) -> dict[str, Any]:
    """One immutable version, as listed under an adapter."""
    return {"object": "adapter.version", "id": manifest.model_id, "model": manifest.model_id, **manifest.to_dict()}


def adapter_object(manifest: AdapterManifest, current_version: int) -> dict[str, Any]:
    """An adapter seen through one of its versions (the one just published or made current)."""
    return {
        "id": manifest.adapter_id,
        "object": "adapter",
        "tenant": manifest.tenant,
        "name": manifest.name,
        "version": manifest.version,
        "model": manifest.model_id,
        "rank": manifest.rank,
        "alpha": manifest.alpha,
        "target_modules": list(manifest.target_modules),
        "created_at": manifest.created_at,
        "current_version": current_version,
    }


def adapter_detail(store: AdapterStore, tenant: str, name: str) -> dict[str, Any]:
    """The adapter at its current version plus every version's manifest (runs in a thread)."""
    versions = store.versions(tenant, name)
    current = store.current_version(tenant, name)
    # A version published or deleted between the two reads must not turn into a 500.
    current_manifest = next((m for m in versions if m.version == current), None) or store.manifest(
        tenant, name, current
    )
    split = store.traffic(tenant, name)
    return {
        **adapter_object(current_manifest, current),
        "traffic": split.to_api() if split else None,
        "versions": [version_object(m) for m in versions],
    }


# ----------------------------------------------------------------------------------- upload


async def upload_adapter(request: Request) -> JSONResponse:
    principal = authenticate(request)
    services = services_of(request)
    base = services.base
    if base is None:
        raise model_loading()
    limit = services.settings.max_upload_bytes
    capped = multipart_upload(request, limit, "the adapter")
    async with capped.form(max_files=len(UPLOAD_FILES), max_fields=4, max_part_size=64 * 1024) as form:
        tenant, name = await _upload_target(request, principal, form)
        uploads = _upload_files(form, limit)
        work = services.settings.data / "tmp" / f"upload-{uuid.uuid4().hex}"
        try:
            await run_in_threadpool(_spool, uploads, work)
            adding = quotas.for_adapter_version(services.store, tenant, name, quotas.tree_bytes(work))
            await run_in_threadpool(services.require_room, tenant, adding)
            manifest = await run_in_threadpool(
                _validate_and_publish, services.store, work, tenant, name, base, services.settings.max_rank
            )
        finally:
            await run_in_threadpool(shutil.rmtree, work, True)
    return JSONResponse(adapter_object(manifest, manifest.version), status_code=201)


async def _upload_target(request: Request, principal: Principal, form: FormData) -> tuple[str, str]:
    """(tenant, name) the upload goes to, from the caller and the text fields."""
    unknown = sorted(set(form.keys()) - {"name", "tenant", "files"})
    if unknown:
        raise bad_request(f"Unknown form field {unknown[0]!r}.", param=unknown[0])
    name = form.get("name")
    if not isinstance(name, str):
        raise bad_request("Form field 'name' (the adapter name) is required.", param="name")
    try:
        validate_adapter_name(name)
    except InvalidId as exc:
        raise bad_request(str(exc), param="name", code="invalid_id") from None
    tenant = form.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise bad_request("Form field 'tenant' must be text.", param="tenant")
    if principal.is_admin:
        if not tenant:
            raise bad_request("The admin must name the tenant in form field 'tenant'.", param="tenant")
        known = await run_in_threadpool(services_of(request).tenants.get_tenant, tenant)
        if known is None:
            raise not_found(f"Tenant {tenant!r} not found.", param="tenant")
        return known.id, name
    if tenant and tenant != principal.tenant_id:
        raise not_found(f"Tenant {tenant!r} not found.", param="tenant")
    assert principal.tenant_id is not None
    return principal.tenant_id, name


def _upload_files(form: FormData, limit: int) -> dict[str, UploadFile]:
    """The two expected files by name, or a 400/413 naming what is wrong."""
    files: dict[str, UploadFile] = {}
    for item in form.getlist("files"):
        if not isinstance(item, UploadFile):
            raise bad_request("Form field 'files' must carry files.", param="files")
        # Only the base name is used, and only to pick a slot; it never becomes a path.
        file_name = PurePosixPath((item.filename or "").replace("\\", "/")).name
        if file_name.endswith(_PICKLE_SUFFIXES):
            raise bad_request(
                f"{file_name!r} refused: only safetensors weights are accepted "
                "(save with safe_serialization=True to get adapter_model.safetensors).",
                param="files",
                code="only_safetensors",
            )
        if file_name not in UPLOAD_FILES:
            raise bad_request(
                f"Unexpected file {file_name!r}: upload exactly {' and '.join(UPLOAD_FILES)}.", param="files"
            )
        if file_name in files:
            raise bad_request(f"{file_name!r} was uploaded twice.", param="files")
        files[file_name] = item
    missing = [f for f in UPLOAD_FILES if f not in files]
    if missing:
        raise bad_request(f"Missing file {missing[0]!r}.", param="files")
    if sum(f.size or 0 for f in files.values()) > limit:
        raise too_large(limit)
    return files


def _spool(uploads: dict[str, UploadFile], work: Path) -> None:
    """Copy the uploads into a fresh private directory (runs in a thread)."""
    work.mkdir(parents=True)
    for file_name, upload in uploads.items():
        upload.file.seek(0)
        with open(work / file_name, "xb") as out:
            shutil.copyfileobj(upload.file, out, 1024 * 1024)


def _validate_and_publish(
    store: AdapterStore, work: Path, tenant: str, name: str, base: ServedBase, max_rank: int
) -> AdapterManifest:
    """Validate the spooled files against the base and publish them (runs in a thread)."""
    weights = work / WEIGHTS_FILE
    try:
        validated = validate_adapter((work / CONFIG_FILE).read_bytes(), weights, base.linear_shapes, max_rank)
    except AdapterValidationError as exc:
        raise bad_request(exc.message, param=exc.param, code="invalid_adapter") from None
    weights_sha256 = sha256_file(weights)

    def make_manifest(version: int) -> AdapterManifest:
        return validated.manifest(
            tenant=tenant, name=name, version=version, spec=base.spec, weights_sha256=weights_sha256, source="upload"
        )

    return store.publish(tenant, name, {CONFIG_FILE: validated.config_bytes(), WEIGHTS_FILE: weights}, make_manifest)


# ----------------------------------------------------------------------------------- read / manage


async def list_adapters(request: Request) -> JSONResponse:
    principal = authenticate(request)
    store = _store(request)

    def collect() -> list[dict[str, Any]]:
        tenant = None if principal.is_admin else principal.tenant_id
        details = []
        for summary in store.list_adapters(tenant):
            try:
                details.append(adapter_detail(store, summary.tenant, summary.name))
            except AdapterNotFound:
                continue  # deleted between listing and reading
        return details

    return JSONResponse({"object": "list", "data": await run_in_threadpool(collect)})


async def get_adapter(request: Request) -> JSONResponse:
    tenant, name = owned_adapter(authenticate(request), request.path_params["tenant"], request.path_params["name"])
    try:
        detail = await run_in_threadpool(adapter_detail, _store(request), tenant, name)
    except AdapterNotFound as exc:
        raise adapter_not_found(exc) from None
    return JSONResponse(detail)


async def rollback_adapter(request: Request) -> JSONResponse:
    tenant, name = owned_adapter(authenticate(request), request.path_params["tenant"], request.path_params["name"])
    data = await read_json_object(request, frozenset({"version"}))
    version = data.get("version")
    if type(version) is not int or version < 1:  # type(): JSON true must not mean version 1
        raise bad_request("Field 'version' must be an integer >= 1.", param="version")
    store = _store(request)
    try:
        manifest = await run_in_threadpool(store.rollback, tenant, name, version)
    except AdapterNotFound as exc:
        raise adapter_not_found(exc) from None
    return JSONResponse(adapter_object(manifest, manifest.version))


async def delete_adapter(request: Request) -> JSONResponse:
    tenant, name = owned_adapter(authenticate(request), request.path_params["tenant"], request.path_params["name"])
    try:
        await run_in_threadpool(_store(request).delete, tenant, name, None)
    except AdapterNotFound as exc:
        raise adapter_not_found(exc) from None
    return JSONResponse({"id": f"{tenant}/{name}", "object": "adapter", "deleted": True})


async def delete_adapter_version(request: Request) -> JSONResponse:
    tenant, name = owned_adapter(authenticate(request), request.path_params["tenant"], request.path_params["name"])
    version: int = request.path_params["version"]
    try:
        await run_in_threadpool(_store(request).delete, tenant, name, version)
    except AdapterNotFound as exc:
        raise adapter_not_found(exc) from None
    return JSONResponse({"id": f"{tenant}/{name}@{version}", "object": "adapter.version", "deleted": True})


routes: list[Route] = [
    Route("/v1/adapters", upload_adapter, methods=["POST"]),
    Route("/v1/adapters", list_adapters, methods=["GET"]),
    Route("/v1/adapters/{tenant}/{name}", get_adapter, methods=["GET"]),
    Route("/v1/adapters/{tenant}/{name}", delete_adapter, methods=["DELETE"]),
    Route("/v1/adapters/{tenant}/{name}/rollback", rollback_adapter, methods=["POST"]),
    Route("/v1/adapters/{tenant}/{name}/versions/{version:int}", delete_adapter_version, methods=["DELETE"]),
]
