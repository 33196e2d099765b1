"""Training files under ``/v1/files``, shaped like OpenAI's Files API (purpose ``fine-tune``).

Contract:

- ``POST /v1/files`` (multipart: ``file``, ``purpose=fine-tune``; the admin adds ``tenant``)
  streams the upload under ``settings.max_file_bytes`` (413 ``upload_too_large`` beyond it, even
  for a chunked body), spools it to ``<data>/tmp``, runs ``trainer.check`` on it and keeps it
  only when the checker accepts it; a refused file is a 400 ``invalid_file`` with the checker's
  message (413 for ``file_too_large``) and leaves nothing behind. An accepted document's passages
  go into the tenant's knowledge index (:mod:`server.knowledge`), embedded for retrieval by
  meaning before the response (within the operator's passage cap and time limit; past them the
  file is searched by its words only); deleting the file deletes them.
- ``GET /v1/files`` (``purpose``, ``after``, ``limit``, ``order``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content`` (the bytes as uploaded) and ``DELETE /v1/files/{id}`` see the
  caller's tenant only; another tenant's file answers the same
  404 as a missing one. The admin sees every tenant's files (``?tenant=`` filters the list).
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route

from server.errors import APIError, bad_request, not_found
from server.jobs.file_check import FileChecker
from server.jobs.training_files import StoredFile
from server.knowledge.knowledge_base import KnowledgeBase
from server.routes.paging import list_object, page_query
from server.services import services_of
from server.tenancy import quotas
from server.tenancy.auth import authenticate
from server.tenancy.scope import acting_tenant, read_scope
from server.upload_limits import multipart_upload, too_large

log = logging.getLogger(__name__)
PURPOSE = "fine-tune"
_FIELDS = frozenset({"file", "purpose", "tenant"})


def file_object(stored: StoredFile) -> dict[str, Any]:
    """OpenAI's file object, plus what the checker found (``format``, ``records``)."""
    return {
        "id": stored.id,
        "object": "file",
        "bytes": stored.bytes,
        "created_at": stored.created_at,
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
        "format": stored.format,
        "records": stored.records,
    }


def file_not_found(file_id: object, param: str | None = None) -> APIError:
    """One 404 for a missing file and another tenant's file alike."""
    return not_found(f"No such File object: {file_id}", code="file_not_found", param=param)


async def upload_file(request: Request) -> JSONResponse:
    principal = authenticate(request)
    services = services_of(request)
    limit = services.settings.max_file_bytes
    capped = multipart_upload(request, limit, "the file")
    async with capped.form(max_files=1, max_fields=4, max_part_size=64 * 1024) as form:
        unknown = sorted(set(form.keys()) - _FIELDS)
        if unknown:
            raise bad_request(f"Unknown form field {unknown[0]!r}.", param=unknown[0])
        tenant = await acting_tenant(request, principal, form.get("tenant"))
        purpose = form.get("purpose")
        if purpose != PURPOSE:
            raise bad_request(f"'purpose' must be {PURPOSE!r}; got {purpose!r}.", param="purpose")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise bad_request("Form field 'file' must carry the file.", param="file")
        if (upload.size or 0) > limit:
            raise too_large(limit)
        filename = PurePosixPath((upload.filename or "").replace("\\", "/")).name
        if not filename or len(filename) > 255:
            raise bad_request("The uploaded file needs a file name (1-255 characters).", param="file")
        spooled = services.settings.data / "tmp" / f"file-upload-{uuid.uuid4().hex}"
        passages = spooled.with_name(f"{spooled.name}.passages.json")
        try:
            await run_in_threadpool(_spool, upload, spooled)
            adding = quotas.Adding(storage_bytes=spooled.stat().st_size, files=1)
            await run_in_threadpool(services.require_room, tenant, adding)
            verdict = await FileChecker.from_settings(services.settings).check_file(spooled, filename, passages)
            if not verdict["ok"]:
                raise _refused(verdict, limit)
            stored = await run_in_threadpool(services.files.add, tenant, filename, PURPOSE, spooled, verdict)
            await run_in_threadpool(_index, services.knowledge, stored, passages)
        finally:
            await run_in_threadpool(spooled.unlink, True)
            await run_in_threadpool(passages.unlink, True)
    return JSONResponse(file_object(stored))


def _index(knowledge: KnowledgeBase, stored: StoredFile, passages: Path) -> None:
    """Index the file's passages for retrieval (a file that yields none, e.g. chat JSONL, adds none)."""
    try:
        found = json.loads(passages.read_text()) if passages.is_file() else []
    except (OSError, ValueError):
        found = []
    if not isinstance(found, list) or not found:
        return
    try:
        knowledge.add_file(stored.tenant, stored.id, stored.filename, found)
    except (KeyError, TypeError, ValueError):  # the checker is ours: a malformed list is a bug, logged
        log.exception("indexing the passages of %s failed; it is stored but not retrievable", stored.id)


def _spool(upload: UploadFile, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    upload.file.seek(0)
    with open(target, "xb") as out:
        while chunk := upload.file.read(1024 * 1024):
            out.write(chunk)


def _refused(verdict: dict[str, Any], limit: int) -> APIError:
    message = verdict.get("message")
    if not isinstance(message, str):
        message = "The file was refused."
    if verdict.get("code") == "file_too_large":
        return APIError(413, message, code="file_too_large", param="file")
    return bad_request(message, param="file", code="invalid_file")


async def list_files(request: Request) -> JSONResponse:
    principal = authenticate(request)
    after, limit = page_query(request, default=10000, maximum=10000)
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request("'order' must be 'asc' or 'desc'.", param="order")
    purpose = request.query_params.get("purpose") or None
    files, has_more = await run_in_threadpool(
        services_of(request).files.list_files,
        read_scope(request, principal),
        purpose=purpose,
        after=after,
        limit=limit,
        order=order,
    )
    return JSONResponse(list_object([file_object(f) for f in files], has_more))


async def _owned_file(request: Request) -> StoredFile:
    principal = authenticate(request)
    file_id = request.path_params["file_id"]
    tenant = None if principal.is_admin else principal.tenant_id
    stored = await run_in_threadpool(services_of(request).files.get, file_id, tenant)
    if stored is None:
        raise file_not_found(file_id)
    return stored


async def get_file(request: Request) -> JSONResponse:
    return JSONResponse(file_object(await _owned_file(request)))


async def file_content(request: Request) -> FileResponse:
    stored = await _owned_file(request)
    path = services_of(request).files.path(stored)
    if not path.is_file():
        raise file_not_found(stored.id)
    return FileResponse(path, media_type="application/octet-stream", filename=stored.filename)


async def delete_file(request: Request) -> JSONResponse:
    stored = await _owned_file(request)
    if not await run_in_threadpool(services_of(request).files.delete, stored.id, stored.tenant):
        raise file_not_found(stored.id)
    return JSONResponse({"id": stored.id, "object": "file", "deleted": True})


routes: list[Route] = [
    Route("/v1/files", upload_file, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", get_file, methods=["GET"]),
    Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
    Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
]
