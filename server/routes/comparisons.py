"""A/B votes under ``/v1/comparisons``, scoped to the caller's tenant.

Contract:

- ``POST /v1/comparisons`` with ``{"left_model", "right_model", "prompt", "vote", "blind"?}``
  records a vote (``vote`` in ``left|right|tie|both_bad``; ``blind`` defaults to false) and
  answers 201 with the stored comparison. Model ids are checked as chat checks them (bad syntax
  400 ``invalid_model_id``; missing or another tenant's 404 ``model_not_found``) and stored
  resolved to the version served now (``acme/support`` -> ``acme/support@3``), so a vote
  always says which version won. The two models must differ. ``left_answer`` and
  ``right_answer`` (optional, the two answers shown) are kept with the prompt only where the
  vote's tenant stores conversations (``store_conversations``); elsewhere only the prompt's
  sha256 is kept. The reply's ``texts_stored`` says which. Decided votes with texts feed
  ``GET /v1/feedback/export?format=preference``.
- ``GET /v1/comparisons[?limit=N]`` lists the caller's votes, newest first (default 100, max 1000),
  in OpenAI's list shape (``has_more`` says whether older votes exist).
- ``GET /v1/comparisons/stats`` gives win rates per pair of models with their counts.
- Scoping as in :mod:`server.tenancy.scope`: a tenant's votes belong to that tenant and its reads
  see only them. The admin may name a ``tenant`` (in the body for a vote, ``?tenant=`` for the
  reads); the admin's reads without one cover every vote, the admin's votes without one belong
  to no tenant. Adapters in a tenant's vote must be that tenant's own.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.ids import BASE_MODEL_ID, InvalidId, parse_model_id
from adapters.store import AdapterNotFound, AdapterStore
from server.comparisons import VOTES, ComparisonStore, VoteTexts
from server.errors import bad_request, model_not_found
from server.routes.paging import list_object, page_query
from server.routes.tenants import read_json_object
from server.services import services_of
from server.tenancy import quotas
from server.tenancy.auth import authenticate
from server.tenancy.scope import acting_tenant, read_scope

MAX_PROMPT_CHARS = 100_000
MAX_ANSWER_CHARS = 32_000
MAX_LIST = 1000
_FIELDS = frozenset({"left_model", "right_model", "prompt", "vote", "blind", "tenant", "left_answer", "right_answer"})


def _comparisons(request: Request) -> ComparisonStore:
    return services_of(request).comparisons


def _served_model(store: AdapterStore, tenant: str | None, model: Any, param: str) -> str:
    """``model`` as served now (``base`` or ``tenant/name@version``), or the error chat would give."""
    if not isinstance(model, str):
        raise bad_request(f"Field '{param}' must be a model id string.", param=param)
    try:
        ref = parse_model_id(model)
    except InvalidId as exc:
        raise bad_request(str(exc), param=param, code="invalid_model_id") from None
    if ref is None:
        return BASE_MODEL_ID
    if tenant is not None and ref.tenant != tenant:
        raise model_not_found(model)
    try:
        return store.resolve(ref).manifest.model_id
    except AdapterNotFound:
        raise model_not_found(model) from None


def _answers(data: dict[str, Any]) -> tuple[str, str] | None:
    """The two answers the vote was about, if the caller sent them (both or neither)."""
    left, right = data.get("left_answer"), data.get("right_answer")
    if left is None and right is None:
        return None
    for side, answer in (("left_answer", left), ("right_answer", right)):
        if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
            raise bad_request(
                f"Field '{side}' must be text of at most {MAX_ANSWER_CHARS} characters, sent with the other side's.",
                param=side,
            )
    assert isinstance(left, str) and isinstance(right, str)
    return left, right


async def _stores_texts(request: Request, tenant: str | None) -> bool:
    if tenant is None:
        return False
    settings = await run_in_threadpool(services_of(request).tenants.get_settings, tenant)
    return settings.store_conversations


async def create_comparison(request: Request) -> JSONResponse:
    principal = authenticate(request)
    data = await read_json_object(request, _FIELDS)
    for field in ("left_model", "right_model", "prompt", "vote"):
        if field not in data:
            raise bad_request(f"Missing required field '{field}'.", param=field)
    vote, prompt, blind = data["vote"], data["prompt"], data.get("blind", False)
    if vote not in VOTES:
        raise bad_request(f"Field 'vote' must be one of {', '.join(VOTES)}.", param="vote")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        raise bad_request(
            f"Field 'prompt' must be non-empty text of at most {MAX_PROMPT_CHARS} characters.", param="prompt"
        )
    if not isinstance(blind, bool):
        raise bad_request("Field 'blind' must be true or false.", param="blind")
    answers = _answers(data)
    named = data.get("tenant")
    # The admin may vote for no tenant (its own tally) or name one; a tenant always votes as itself.
    tenant = None if principal.is_admin and named is None else await acting_tenant(request, principal, named)
    store = services_of(request).store
    left = await run_in_threadpool(_served_model, store, tenant, data["left_model"], "left_model")
    right = await run_in_threadpool(_served_model, store, tenant, data["right_model"], "right_model")
    if left == right:
        raise bad_request(f"Both sides are {left}; compare two different models.", param="right_model")
    if tenant is not None:
        services = services_of(request)
        await run_in_threadpool(services.require_room, tenant, quotas.Adding(comparisons=1))
    texts = VoteTexts(prompt, *answers) if answers and await _stores_texts(request, tenant) else None
    record = _comparisons(request).record
    comparison = await run_in_threadpool(record, tenant, left, right, prompt, vote, blind, texts)
    return JSONResponse({**comparison.to_dict(), "texts_stored": texts is not None}, status_code=201)


async def list_comparisons(request: Request) -> JSONResponse:
    scope = read_scope(request, authenticate(request))
    _, limit = page_query(request, default=100, maximum=MAX_LIST)
    votes = await run_in_threadpool(_comparisons(request).list, scope, limit + 1)
    return JSONResponse(list_object([v.to_dict() for v in votes[:limit]], has_more=len(votes) > limit))


async def comparison_stats(request: Request) -> JSONResponse:
    scope = read_scope(request, authenticate(request))
    stats = await run_in_threadpool(_comparisons(request).stats, scope)
    return JSONResponse({"object": "list", "data": [s.to_dict() for s in stats]})


routes: list[Route] = [
    Route("/v1/comparisons", create_comparison, methods=["POST"]),
    Route("/v1/comparisons", list_comparisons, methods=["GET"]),
    Route("/v1/comparisons/stats", comparison_stats, methods=["GET"]),
]
