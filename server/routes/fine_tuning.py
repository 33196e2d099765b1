"""Fine-tuning jobs under ``/v1/fine_tuning/jobs``, shaped like OpenAI's API.

Contract:

- ``POST /v1/fine_tuning/jobs`` (JSON: ``model``, ``training_file``, optional ``validation_file``,
  ``suffix``, ``method``, ``hyperparameters``, ``seed``; the admin adds ``tenant``): ``model`` is
  ``base`` or an adapter of the acting tenant (else 404 ``model_not_found``); with DPO it is the
  starting point and the frozen reference too. Files must be the tenant's (else 404
  ``file_not_found``, the same for another tenant's file) and of the method's kind: preference
  JSONL for DPO, anything else for supervised (400 ``invalid_training_file`` /
  ``invalid_validation_file``). ``method`` is OpenAI's (``{"type": "supervised" | "dpo", ...}``,
  :mod:`adapters.training_method`); its hyperparameters, or the top-level ``hyperparameters``
  (not both), are checked and normalised in-process by :mod:`adapters.hyperparameters`, the
  schema the trainer applies, then held to the operator's ceilings (400
  ``invalid_hyperparameters`` naming the parameter, e.g. ``method.dpo.hyperparameters.beta``).
  The job object shows ``method`` as OpenAI does, hyperparameters inside. ``suffix`` is the
  adapter name the job publishes to (``<tenant>/<suffix>``, a new version each run); when omitted
  it is derived: the adapter's own name when continuing from one, else a slug of the training
  file's name (``Handbook v2.md`` -> ``handbook-v2``). The job starts in ``validating_files``.
- ``GET /v1/fine_tuning/jobs`` (``after``, ``limit``), ``GET .../{id}``, ``POST .../{id}/cancel``,
  ``DELETE .../{id}`` (a finished job, with its events and log; swaplora's own)
  and ``GET .../{id}/events`` (``after``, ``limit``; newest first) see the caller's tenant only.
  The events route streams live over SSE with ``?stream=true`` or ``Accept: text/event-stream``:
  every event oldest first, then ``[DONE]`` once the job has ended.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.ids import InvalidId, parse_model_id, validate_adapter_name
from adapters.store import AdapterNotFound
from adapters.training_method import MethodError, TrainingMethod, parse_method
from server.errors import APIError, bad_request, model_not_found, not_found
from server.jobs.job_store import TERMINAL, Job, JobEvent
from server.routes.files import file_not_found
from server.routes.paging import list_object, page_query
from server.routes.tenants import read_json_object
from server.services import Services, services_of
from server.settings import Settings
from server.tenancy import quotas
from server.tenancy.auth import authenticate
from server.tenancy.rate_limits import check_concurrent_jobs
from server.tenancy.scope import acting_tenant, read_scope

_FIELDS = frozenset(
    {"model", "training_file", "validation_file", "suffix", "method", "hyperparameters", "seed", "tenant"}
)
PREFERENCE_FORMAT = "preference_jsonl"
"""The checker's format of OpenAI's preference JSONL (:mod:`trainer.preference_data`)."""
_POLL_S = 0.5


def job_object(job: Job) -> dict[str, Any]:
    """OpenAI's fine-tuning job object (``method`` included) plus ``metrics``, ``progress`` and ``suffix``."""
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "model": job.model,
        "fine_tuned_model": job.fine_tuned_model,
        "organization_id": job.tenant,
        "status": job.status,
        "trained_tokens": job.trained_tokens,
        "training_file": job.training_file,
        "validation_file": job.validation_file,
        "hyperparameters": job.hyperparameters,
        "method": TrainingMethod.from_dict(job.method).openai_object(job.hyperparameters),
        "seed": job.seed,
        "error": asdict(job.error) if job.error else None,
        "result_files": [],
        "estimated_finish": job.estimated_finish,
        "integrations": [],
        "suffix": job.suffix,
        "user_provided_suffix": job.suffix,
        "metrics": job.metrics,
        "progress": {"step": job.step, "total_steps": job.total_steps} if job.total_steps else None,
    }


def event_object(event: JobEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "object": "fine_tuning.job.event",
        "created_at": event.created_at,
        "level": event.level,
        "message": event.message,
        "data": event.data,
        "type": event.type,
    }


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")[:63].strip("-") or "assistant"


# ----------------------------------------------------------------------------------- create


async def create_job(request: Request) -> JSONResponse:
    principal = authenticate(request)
    services = services_of(request)
    data = await read_json_object(request, _FIELDS)
    tenant = await acting_tenant(request, principal, data.get("tenant"))
    await run_in_threadpool(_check_job_limit, services, tenant)
    model = await run_in_threadpool(_checked_model, services, tenant, data.get("model"))
    training = await run_in_threadpool(_owned_file, services, tenant, data, "training_file", True)
    validation = await run_in_threadpool(_owned_file, services, tenant, data, "validation_file", False)
    suffix = data.get("suffix")
    if suffix is None:
        ref = parse_model_id(model)
        suffix = ref.name if ref is not None else _slug(training.filename.rsplit(".", 1)[0])
    try:
        validate_adapter_name(suffix)
    except InvalidId as exc:
        raise bad_request(str(exc).replace("adapter name", "suffix"), param="suffix", code="invalid_suffix") from None
    # The job will publish a version of tenant/suffix: room for it now (its size is known only then).
    adding = quotas.for_adapter_version(services.store, tenant, suffix, 1)
    await run_in_threadpool(services.require_room, tenant, adding)
    seed = data.get("seed")
    if seed is None:
        seed = secrets.randbelow(2**31)
    elif type(seed) is not int or not 0 <= seed < 2**31:
        raise bad_request("'seed' must be an integer from 0 to 2147483647.", param="seed")
    method, hyperparameters = _checked_method(services.settings, data.get("method"), data.get("hyperparameters"))
    _check_format(method, training, "training_file")
    _check_format(method, validation, "validation_file")
    job = await run_in_threadpool(
        lambda: services.jobs.create(
            tenant=tenant,
            model=model,
            training_file=training.id,
            validation_file=validation.id if validation else None,
            suffix=suffix,
            hyperparameters=hyperparameters,
            seed=seed,
            method=method.to_dict(),
        )
    )
    if services.runner is not None:
        services.runner.wake()
    return JSONResponse(job_object(job))


def _check_job_limit(services: Services, tenant: str) -> None:
    """429 while the tenant has its ``limits.concurrent_jobs`` jobs not finished yet."""
    active = [job for job in services.jobs.with_status("validating_files", "queued", "running") if job.tenant == tenant]
    check_concurrent_jobs(services.tenants.get_settings(tenant).effective_limits, len(active))


def _checked_model(services: Services, tenant: str, model: object) -> str:
    if not isinstance(model, str) or not model:
        raise bad_request("Field 'model' is required: 'base' or one of your adapters.", param="model")
    try:
        ref = parse_model_id(model)
    except InvalidId:
        raise model_not_found(model) from None
    if ref is None:
        return model
    if ref.tenant != tenant:
        raise model_not_found(model)
    try:
        services.store.resolve(ref)
    except AdapterNotFound:
        raise model_not_found(model) from None
    return model


def _owned_file(services: Services, tenant: str, data: dict[str, Any], param: str, required: bool) -> Any:
    file_id = data.get(param)
    if file_id is None and not required:
        return None
    if not isinstance(file_id, str) or not file_id:
        raise bad_request(f"Field {param!r} must be the id of an uploaded file.", param=param)
    stored = services.files.get(file_id, tenant)
    if stored is None:
        raise file_not_found(file_id, param=param)
    return stored


def _within_ceilings(settings: Settings, hyperparameters: dict[str, Any], where: str) -> None:
    """The operator's ceilings (``SWAPLORA_MAX_JOB_SECONDS``, ``SWAPLORA_MAX_JOB_EPOCHS``): 400 above them."""
    for key, ceiling, unit in (
        ("max_seconds", settings.max_job_seconds, "seconds"),
        ("n_epochs", settings.max_job_epochs, "epochs"),
    ):
        value = hyperparameters.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > ceiling:
            raise bad_request(
                f"{where}.{key} may be at most {ceiling:g} {unit} on this server.",
                param=f"{where}.{key}",
                code="invalid_hyperparameters",
            )


def _checked_method(
    settings: Settings, method: object, hyperparameters: object
) -> tuple[TrainingMethod, dict[str, Any]]:
    """The method and its hyperparameters normalised (defaults filled in), or a 400 naming the
    parameter at fault."""
    try:
        checked, normalised, where = parse_method(method, hyperparameters)
    except MethodError as exc:
        raise bad_request(exc.message, param=exc.param, code=exc.code or "invalid_request") from None
    _within_ceilings(settings, normalised, where)
    return checked, normalised


def _check_format(method: TrainingMethod, file: Any, param: str) -> None:
    """400 when the file's kind does not fit the method: DPO trains on preference pairs only,
    supervised training on anything but them."""
    if file is None or (file.format == PREFERENCE_FORMAT) == method.is_dpo:
        return
    code = "invalid_training_file" if param == "training_file" else "invalid_validation_file"
    if method.is_dpo:
        message = (
            f"{param} {file.id} ({file.filename}) is not preference JSONL: a DPO job needs lines with "
            "input, preferred_output and non_preferred_output, as OpenAI's."
        )
    else:
        message = (
            f'{param} {file.id} ({file.filename}) holds preference pairs: train on it with method {{"type": "dpo"}}.'
        )
    raise bad_request(message, param=param, code=code)


# ----------------------------------------------------------------------------------- read / cancel


async def _owned_job(request: Request) -> Job:
    principal = authenticate(request)
    job_id = request.path_params["job_id"]
    tenant = None if principal.is_admin else principal.tenant_id
    job = await run_in_threadpool(services_of(request).jobs.get, job_id, tenant)
    if job is None:
        raise not_found(f"No fine-tuning job {job_id!r}.", code="job_not_found")
    return job


async def list_jobs(request: Request) -> JSONResponse:
    principal = authenticate(request)
    after, limit = page_query(request, default=20, maximum=100)
    jobs, has_more = await run_in_threadpool(
        lambda: services_of(request).jobs.list_jobs(read_scope(request, principal), after=after, limit=limit)
    )
    return JSONResponse(list_object([job_object(j) for j in jobs], has_more))


async def get_job(request: Request) -> JSONResponse:
    return JSONResponse(job_object(await _owned_job(request)))


async def cancel_job(request: Request) -> JSONResponse:
    job = await _owned_job(request)
    if job.finished:
        raise APIError(409, f"Job {job.id} has already ended ({job.status}).", code="job_already_ended")
    runner = services_of(request).runner
    assert runner is not None  # set for as long as the app runs
    ended = await runner.cancel(job.id)
    return JSONResponse(job_object(ended or job))


async def delete_job(request: Request) -> JSONResponse:
    """Delete a finished job, its events and its work directory (its log); 409 while it runs."""
    job = await _owned_job(request)
    services = services_of(request)
    status = await run_in_threadpool(services.jobs.delete, job.id, job.tenant)
    if status is not None and status not in TERMINAL:
        raise APIError(409, f"Job {job.id} has not ended ({status}); cancel it first.", code="job_not_ended")
    await run_in_threadpool(shutil.rmtree, services.settings.jobs_dir / job.id, True)
    return JSONResponse({"id": job.id, "object": "fine_tuning.job.deleted", "deleted": True})


async def job_events(request: Request) -> Response:
    job = await _owned_job(request)
    jobs = services_of(request).jobs
    stream = request.query_params.get("stream", "").lower() in ("1", "true", "yes")
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        return EventSourceResponse(_live_events(jobs, job.id), ping=15)
    after, limit = page_query(request, default=20, maximum=1000)
    events, has_more = await run_in_threadpool(lambda: jobs.events(job.id, after=after, limit=limit))
    return JSONResponse(list_object([event_object(e) for e in events], has_more))


async def _live_events(jobs: Any, job_id: str) -> AsyncIterator[dict[str, str]]:
    seen = 0
    while True:
        # Read the state before the events: a job seen ended has written all its events by then.
        job = await run_in_threadpool(jobs.get, job_id)
        for event in await run_in_threadpool(jobs.events_since, job_id, seen):
            seen = event.seq
            yield {"id": event.id, "data": json.dumps(event_object(event))}
        if job is None or job.finished:
            yield {"data": "[DONE]"}
            return
        await asyncio.sleep(_POLL_S)


routes: list[Route] = [
    Route("/v1/fine_tuning/jobs", create_job, methods=["POST"]),
    Route("/v1/fine_tuning/jobs", list_jobs, methods=["GET"]),
    Route("/v1/fine_tuning/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/v1/fine_tuning/jobs/{job_id}", delete_job, methods=["DELETE"]),
    Route("/v1/fine_tuning/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/v1/fine_tuning/jobs/{job_id}/events", job_events, methods=["GET"]),
]
