"""What chat and text completions share, from the request to the engine and back.

Flow: :func:`preflight` authenticates (publishable keys too), validates the body, applies the
tenant's rules (a publishable key chats only from an allowed origin, only with the tenant's
``default_model``, within ``widget_max_tokens``, with ``n=1`` and without benchmark switches),
counts the request against its limits *before* any work (:class:`~server.tenancy.rate_limits.Admission`)
and resolves ``model`` inside the caller's tenant (another tenant's id, or one that does not
exist, is the same 404); an unpinned adapter id follows the adapter's traffic split, sticky per
``user`` (:mod:`adapters.traffic_split`), and the reply's ``model`` names the version that
answered. :meth:`Preflight.record` puts the finished request in the served log (texts only where
the tenant stores conversations). The route then builds its prompt and calls :func:`start`; every error
after the admission releases it (:meth:`Preflight.release_on_error`). :func:`collect` gathers a
non-streamed reply, cancelling the engine rows if the client goes away meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from adapters.ids import InvalidId, parse_model_id
from adapters.store import AdapterNotFound
from server.api.sampling_fields import SamplingFields
from server.engine.adapter_cache import AdapterHandle
from server.engine.admission import Generation, QueueFull
from server.engine.grammar import Grammar
from server.engine.requests import Finished, TextDelta, TokenLogprob
from server.engine.sampling import SamplingParams
from server.errors import APIError, bad_request, model_loading, model_not_found
from server.rollouts.served_log import Served
from server.schemas import parse_json
from server.services import Services, services_of
from server.settings import Settings
from server.tenancy.auth import Principal, authenticate, can_use_tenant
from server.tenancy.cors import require_allowed_origin
from server.tenancy.rate_limits import UNLIMITED, Admission, Level
from server.tenancy.tenant_settings import TenantSettings, lower_of
from server.upload_limits import read_capped

Body = TypeVar("Body", bound=SamplingFields)


@dataclass
class Preflight:
    """A request that passed authentication, validation, its tenant's rules and its limits."""

    services: Services
    principal: Principal
    settings: TenantSettings | None
    admission: Admission
    served_model: str
    """``base`` or ``tenant/name@version``: the version is fixed for the whole request."""
    adapter: AdapterHandle | None

    @contextmanager
    def release_on_error(self) -> Iterator[None]:
        """Release the admission if the block fails (a 429 when the engine's queue is full)."""
        try:
            yield
        except QueueFull as full:
            self.admission.done()
            raise APIError(
                429, full.message, code="server_busy", headers={"Retry-After": str(full.retry_after_s)}
            ) from None
        except BaseException:
            self.admission.done()
            raise

    @property
    def settings_tenant(self) -> str | None:
        """The tenant whose settings the request follows: the caller's, or the adapter's owner's."""
        if self.principal.tenant_id is not None:
            return self.principal.tenant_id
        return self.served_model.partition("/")[0] if "/" in self.served_model else None

    @property
    def stores_texts(self) -> bool:
        """Whether the tenant keeps conversation texts (``store_conversations``)."""
        return self.settings is not None and self.settings.store_conversations

    @property
    def context_limit(self) -> int:
        assert self.services.base is not None  # ready_services checked it
        return min(self.services.base.context_length, self.services.settings.max_context)

    @property
    def cache_salt(self) -> str:
        """Keeps base-model prefixes per tenant unless the operator shares them (adapters are per tenant)."""
        return (self.principal.tenant_id or "") if self.services.settings.prefix_cache_per_tenant else ""

    def max_tokens(
        self, body: SamplingFields, prompt_len: int, default: int | None = None, prompt_param: str = "messages"
    ) -> int:
        """The completion's length: the request's, else the server's default, within the context."""
        limit = self.context_limit
        if prompt_len >= limit:
            raise bad_request(
                f"The prompt is {prompt_len} tokens; this model's context is {limit} tokens.",
                param=prompt_param,
                code="context_length_exceeded",
            )
        requested = body.requested_max_tokens()
        if requested is not None and prompt_len + requested > limit:
            raise bad_request(
                f"{body.max_tokens_param}={requested} plus the prompt's {prompt_len} tokens exceeds the context "
                f"of {limit} tokens.",
                param=body.max_tokens_param,
                code="context_length_exceeded",
            )
        ceiling = limit
        if self.principal.is_publishable and self.settings is not None:
            ceiling = widget_max_tokens(self.services.settings, self.settings)
        default = default or self.services.settings.default_max_tokens
        return requested if requested is not None else min(default, limit - prompt_len, ceiling)

    def record(self, completion_id: str, generations: list[Generation], conversation: dict[str, Any] | None) -> None:
        """Put the request in the served log (``conversation`` kept only where the tenant stores them)."""
        model = self.served_model
        adapter, _, version = model.partition("@")
        first = generations[0]
        end = first.finished.get(0)
        self.services.served.record(
            Served(
                id=completion_id,
                tenant=self.principal.tenant_id,
                adapter=adapter,
                version=int(version) if version else None,
                model=model,
                created_at=time.time(),
                ttft_ms=None if first.first_token_s is None else first.first_token_s * 1000,
                latency_ms=(first.total_s if first.total_s is not None else first.elapsed_s) * 1000,
                prompt_tokens=sum(g.tokens[0] for g in generations),
                completion_tokens=sum(g.tokens[1] for g in generations),
                finish_reason=end.reason if end is not None else "disconnected",
                conversation=json.dumps(conversation) if conversation is not None and self.stores_texts else None,
            )
        )

    def start(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        n: int = 1,
        grammar: Grammar | None = None,
    ) -> Generation:
        """Queue the request in the engine (call inside :meth:`release_on_error`, after
        ``admission.afford`` of the prompt tokens)."""
        assert self.services.admitter is not None  # ready_services checked it
        return self.services.admitter.generate(
            prompt_ids,
            params,
            self.adapter,
            self.principal.tenant_id,
            batch_rows(self.services, self.settings),
            n=n,
            grammar=grammar,
            cache_salt=self.cache_salt,
        )


async def preflight(request: Request, body_type: type[Body]) -> tuple[Preflight, Body]:
    """Authenticate, validate, apply the tenant's rules, admit, resolve ``model``."""
    principal = authenticate(request, allow_publishable=True)
    body = parse_json(body_type, await read_capped(request, services_of(request).settings.max_chat_body_bytes))
    settings = await run_in_threadpool(_tenant_settings, request, principal, body)
    services = ready_services(request)
    if body.n > services.settings.max_choices:
        raise bad_request(f"n may be at most {services.settings.max_choices} on this server.", param="n")
    admission = admit(services, principal, settings)
    try:
        served_model, adapter = await run_in_threadpool(resolve_adapter, services, principal, body.model, body.user)
    except BaseException:
        admission.done()
        raise
    return Preflight(services, principal, settings, admission, served_model, adapter), body


def ready_services(request: Request) -> Services:
    services = services_of(request)
    if services.base is None or services.admitter is None:
        raise model_loading()
    return services


def resolve_adapter(
    services: Services, principal: Principal, model: str, conversation: str | None = None
) -> tuple[str, AdapterHandle | None]:
    """The served model id (``base`` or ``tenant/name@version``) and the adapter to use; an
    unpinned id picks its version by the adapter's traffic split for ``conversation``."""
    try:
        ref = parse_model_id(model)
    except InvalidId as exc:
        raise bad_request(str(exc), param="model", code="invalid_model_id") from None
    if ref is None:
        return "base", None
    if not can_use_tenant(principal, ref.tenant):
        raise model_not_found(model)
    try:
        resolved = services.store.resolve(ref, conversation)
    except AdapterNotFound:
        raise model_not_found(model) from None
    manifest = resolved.manifest
    assert services.base is not None  # the engine serves it (ready_services)
    if manifest.base_spec_hash != services.base.spec.hash:
        raise APIError(
            409,
            f"Adapter {manifest.model_id} was built for a different base model; retrain or re-upload it.",
            code="adapter_base_mismatch",
            param="model",
        )
    return manifest.model_id, AdapterHandle(manifest.model_id, resolved.path)


def _not_for_publishable(param: str) -> APIError:
    return APIError(403, f"{param} is not available to publishable keys.", code="parameter_not_allowed", param=param)


def _tenant_settings(request: Request, principal: Principal, body: SamplingFields) -> TenantSettings | None:
    """The settings of the request's tenant; enforces the publishable-key rules."""
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
            raise _not_for_publishable("ignore_eos")
        if body.n != 1:  # a page shows one answer; more only burn the tenant's budget
            raise _not_for_publishable("n")
        ceiling = widget_max_tokens(services_of(request).settings, settings)
        requested = body.requested_max_tokens()
        if requested is not None and requested > ceiling:
            raise bad_request(
                f"A publishable key may ask for at most {ceiling} tokens.",
                param=body.max_tokens_param,
                code="max_tokens_too_large",
            )
    return settings


def widget_max_tokens(server: Settings, settings: TenantSettings) -> int:
    """Most completion tokens a publishable key may ask for: the tenant's own cap under the server's."""
    own = settings.widget_max_tokens
    return server.publishable_max_tokens if own is None else min(own, server.publishable_max_tokens)


def batch_rows(services: Services, settings: TenantSettings | None) -> int | None:
    """Rows of the running batch the request's tenant may hold (None: the admin, no cap)."""
    if settings is None:
        return None
    server = services.settings
    default = server.max_running_per_tenant or max(1, server.max_batch_size * 3 // 4)
    own = settings.effective_limits.batch_rows
    return default if own is None else min(own, default)


def admit(services: Services, principal: Principal, settings: TenantSettings | None) -> Admission:
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


def settle(admission: Admission, generations: list[Generation], prompt_len: int) -> None:
    """Charge the tokens the request used (its prompts' if it never ran) and end the admission."""
    used = sum(sum(g.tokens) for g in generations)
    admission.done(used if any(g.finished for g in generations) else prompt_len)


def usage(generations: list[Generation]) -> dict[str, Any]:
    """OpenAI's ``usage`` of a request's generations (one per prompt), with the prompt tokens the
    prefix cache served as ``prompt_tokens_details.cached_tokens``."""
    prompt = sum(g.tokens[0] for g in generations)
    completion = sum(g.tokens[1] for g in generations)
    cached = sum(g.finished[0].cached_tokens for g in generations if 0 in g.finished)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def engine_error(finished: Finished) -> APIError:
    return APIError(500, finished.error or "Generation failed.", type="api_error", code="generation_failed")


@dataclass
class ChoiceResult:
    """One choice of a non-streamed reply."""

    pieces: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finished: Finished | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


async def collect(request: Request, generation: Generation, n: int) -> list[ChoiceResult]:
    """Every choice of ``generation``, whole; a 500 if the engine failed; cancels on disconnect."""
    results = [ChoiceResult() for _ in range(n)]
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
            result = results[event.index]
            result.logprobs.extend(event.logprobs)
            if isinstance(event, TextDelta):
                result.pieces.append(event.text)
            else:
                if event.reason == "error":
                    raise engine_error(event)
                result.finished = event
                if generation.done:
                    return results
            next_event = asyncio.ensure_future(anext(events))
    finally:
        next_event.cancel()
        await events.aclose()
