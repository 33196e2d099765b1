"""``POST /v1/chat/completions``: OpenAI-compatible chat, streamed over SSE or returned whole.

Flow: authenticate -> validate the body -> resolve ``model`` inside the caller's tenant (another
tenant's id, or one that does not exist, is the same 404 ``model_not_found``) -> render the
prompt with the base's chat template -> check the context budget -> generate. The adapter version
is fixed when the request starts, so publishing a new version never changes a reply in flight.
Streaming ends with ``data: [DONE]``; a client that goes away cancels its row in the engine.

Tenancy: the tenant's ``system_prompt`` is applied when the messages bring no system message
(the tenant is the caller's, or for the admin the adapter's). A publishable key (the website
widget) may chat only from one of the tenant's ``allowed_origins`` and only with its
``default_model`` (403 otherwise). A tenant's requests pass its limits (429 + Retry-After,
:mod:`server.tenancy.rate_limits`); the admission ends when the response does, however it ends.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.ids import InvalidId, parse_model_id
from adapters.store import AdapterNotFound
from server.engine.adapter_cache import AdapterHandle
from server.engine.admission import Generation, QueueFull
from server.engine.sampling import SamplingParams
from server.engine.step_loop import Finished, TextDelta
from server.errors import APIError, bad_request, model_loading, model_not_found
from server.prompt import refuse_what_cannot_fit, render_prompt
from server.schemas import ChatCompletionRequest, parse_json
from server.services import Services, services_of
from server.settings import Settings
from server.tenancy.auth import Principal, authenticate, can_use_tenant
from server.tenancy.cors import require_allowed_origin
from server.tenancy.rate_limits import UNLIMITED, Admission, Level, ReleaseAfter
from server.tenancy.tenant_settings import TenantSettings, lower_of
from server.upload_limits import read_capped


def _ready_services(request: Request) -> Services:
    services = services_of(request)
    if services.engine is None:
        raise model_loading()
    return services


def resolve_adapter(services: Services, principal: Principal, model: str) -> tuple[str, AdapterHandle | None]:
    """The served model id (``base`` or ``tenant/name@version``) and the adapter to use."""
    try:
        ref = parse_model_id(model)
    except InvalidId as exc:
        raise bad_request(str(exc), param="model", code="invalid_model_id") from None
    if ref is None:
        return "base", None
    if not can_use_tenant(principal, ref.tenant):
        raise model_not_found(model)
    try:
        resolved = services.store.resolve(ref)
    except AdapterNotFound:
        raise model_not_found(model) from None
    manifest = resolved.manifest
    assert services.base is not None  # the engine serves it (_ready_services)
    if manifest.base_spec_hash != services.base.spec.hash:
        raise APIError(
            409,
            f"Adapter {manifest.model_id} was built for a different base model; retrain or re-upload it.",
            code="adapter_base_mismatch",
            param="model",
        )
    return manifest.model_id, AdapterHandle(manifest.model_id, resolved.path)


def _context_limit(services: Services) -> int:
    assert services.base is not None  # the engine serves it (_ready_services)
    return min(services.base.context_length, services.settings.max_context)


def _sampling(
    services: Services, body: ChatCompletionRequest, prompt_len: int, ceiling: int | None = None
) -> SamplingParams:
    """The request's sampling; ``ceiling`` bounds the completion when the request names none."""
    limit = _context_limit(services)
    if prompt_len >= limit:
        raise bad_request(
            f"The prompt is {prompt_len} tokens; this model's context is {limit} tokens.",
            param="messages",
            code="context_length_exceeded",
        )
    requested = body.requested_max_tokens()
    if requested is not None and prompt_len + requested > limit:
        raise bad_request(
            f"max_tokens={requested} plus the prompt's {prompt_len} tokens exceeds the context of {limit} tokens.",
            param="max_completion_tokens" if body.max_completion_tokens else "max_tokens",
            code="context_length_exceeded",
        )
    max_tokens = requested or min(services.settings.default_max_tokens, limit - prompt_len, ceiling or limit)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stop_strings(),
        ignore_eos=body.ignore_eos,
    )


def _usage(finished: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }


def _engine_error(finished: Finished) -> APIError:
    return APIError(500, finished.error or "Generation failed.", type="api_error", code="generation_failed")


def _tenant_settings(request: Request, principal: Principal, body: ChatCompletionRequest) -> TenantSettings | None:
    """The settings of the request's tenant; enforces the publishable-key rule."""
    tenant_id = principal.tenant_id
    if tenant_id is None and body.model != "base":
        tenant_id = body.model.partition("/")[0]  # the admin using an adapter: that tenant's prompt
    if tenant_id is None:
        return None
    settings = services_of(request).tenants.get_settings(tenant_id)
    if principal.is_publishable:
        require_allowed_origin(request, principal, settings)
        if body.model != settings.default_model:
            raise APIError(
                403,
                f"This key may only chat with the model {settings.default_model!r}.",
                code="model_not_allowed",
                param="model",
            )
        if body.ignore_eos:  # a benchmark switch: on a web page it only burns the tenant's budget
            raise APIError(
                403,
                "ignore_eos is not available to publishable keys.",
                code="parameter_not_allowed",
                param="ignore_eos",
            )
        ceiling = _widget_max_tokens(services_of(request).settings, settings)
        requested = body.requested_max_tokens()
        if requested is not None and requested > ceiling:
            raise bad_request(
                f"A publishable key may ask for at most {ceiling} tokens.",
                param="max_completion_tokens" if body.max_completion_tokens else "max_tokens",
                code="max_tokens_too_large",
            )
    return settings


def _widget_max_tokens(server: Settings, settings: TenantSettings) -> int:
    """Most completion tokens a publishable key may ask for: the tenant's own cap under the server's."""
    own = settings.widget_max_tokens
    return server.publishable_max_tokens if own is None else min(own, server.publishable_max_tokens)


def _batch_rows(services: Services, settings: TenantSettings | None) -> int | None:
    """Rows of the running batch the request's tenant may hold (None: the admin, no cap)."""
    if settings is None:
        return None
    server = services.settings
    default = server.max_running_per_tenant or max(1, server.max_batch_size * 3 // 4)
    own = settings.effective_limits.batch_rows
    return default if own is None else min(own, default)


def _admit(services: Services, principal: Principal, settings: TenantSettings | None) -> Admission:
    """Count the request against its tenant (and, for a publishable key, the key and the visitor)
    before any work is done for it, so that every request a caller makes counts."""
    if principal.tenant_id is None or settings is None:
        return UNLIMITED
    levels = [Level(principal.tenant_id, settings.effective_limits)]
    if principal.is_publishable:
        visitor = lower_of(settings.visitor_limits, services.settings.visitor_limit_ceilings)
        levels += [
            Level(f"key:{principal.key_digest}", settings.key_limits, " for this key"),
            Level(f"visitor:{principal.key_digest}:{principal.address}", visitor, " from this visitor"),
        ]
    return services.limits.admit_all(levels)


def _settle(admission: Admission, generation: Generation, prompt_len: int) -> None:
    finished = generation.finished
    admission.done(finished.prompt_tokens + finished.completion_tokens if finished else prompt_len)


async def chat_completions(request: Request) -> Response | ReleaseAfter:
    principal = authenticate(request, allow_publishable=True)
    body = parse_json(
        ChatCompletionRequest, await read_capped(request, services_of(request).settings.max_chat_body_bytes)
    )
    settings = await run_in_threadpool(_tenant_settings, request, principal, body)
    services = _ready_services(request)
    assert services.base is not None and services.admitter is not None  # both set before the engine
    admission = _admit(services, principal, settings)
    try:
        served_model, adapter = await run_in_threadpool(resolve_adapter, services, principal, body.model)
        system_prompt = settings.system_prompt if settings else None
        await run_in_threadpool(
            refuse_what_cannot_fit, services.base.tokenizer, list(body.messages), _context_limit(services)
        )
        prompt_ids = await run_in_threadpool(render_prompt, services.base.tokenizer, list(body.messages), system_prompt)
        admission.afford(len(prompt_ids))
        ceiling = _widget_max_tokens(services.settings, settings) if principal.is_publishable and settings else None
        params = _sampling(services, body, len(prompt_ids), ceiling)
        generation = services.admitter.generate(
            prompt_ids, params, adapter, principal.tenant_id, _batch_rows(services, settings)
        )
    except QueueFull as full:
        admission.done()
        raise APIError(
            429, full.message, code="server_busy", headers={"Retry-After": str(full.retry_after_s)}
        ) from None
    except BaseException:
        admission.done()
        raise
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _stream(generation, completion_id, created, served_model, include_usage)
        return ReleaseAfter(
            EventSourceResponse(events, ping=15), lambda: _settle(admission, generation, len(prompt_ids))
        )
    try:
        return await _complete(request, generation, completion_id, created, served_model)
    finally:
        _settle(admission, generation, len(prompt_ids))


async def _complete(request: Request, generation: Generation, cid: str, created: int, model: str) -> Response:
    pieces: list[str] = []
    events = generation.__aiter__()
    next_event = asyncio.ensure_future(anext(events))
    checked_at = time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({next_event}, timeout=0.5)
            # Check on a clock, not only when idle: while tokens keep coming, `done` is never empty.
            if time.monotonic() - checked_at >= 0.5:
                checked_at = time.monotonic()
                if await request.is_disconnected():
                    generation.cancel()
            if not done:
                continue
            event = next_event.result()
            if isinstance(event, TextDelta):
                pieces.append(event.text)
                next_event = asyncio.ensure_future(anext(events))
                continue
            assert isinstance(event, Finished)
            if event.reason == "error":
                raise _engine_error(event)
            return JSONResponse(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(pieces)},
                            "logprobs": None,
                            "finish_reason": event.reason,
                        }
                    ],
                    "usage": _usage(event),
                }
            )
    finally:
        next_event.cancel()
        await events.aclose()


def _chunk(cid: str, created: int, model: str, delta: dict[str, str], finish_reason: str | None) -> dict[str, str]:
    return {
        "data": json.dumps(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
        )
    }


async def _stream(
    generation: Generation, cid: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[dict[str, str]]:
    yield _chunk(cid, created, model, {"role": "assistant", "content": ""}, None)
    async for event in generation:
        if isinstance(event, TextDelta):
            yield _chunk(cid, created, model, {"content": event.text}, None)
            continue
        if event.reason == "error":
            yield {"data": json.dumps(_engine_error(event).body())}
            return
        yield _chunk(cid, created, model, {}, event.reason)
        if include_usage:
            usage = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(event),
            }
            yield {"data": json.dumps(usage)}
    yield {"data": "[DONE]"}


routes = [Route("/v1/chat/completions", chat_completions, methods=["POST"])]
