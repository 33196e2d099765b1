"""End users' feedback: ``POST /v1/feedback`` and ``GET /v1/feedback/export``.

Contract:

- ``POST /v1/feedback`` with ``{"completion_id": "chatcmpl-...", "rating": "up" | "down",
  "comment"?: "..."}`` rates an answer; a later rating of the same answer replaces the earlier
  one. Tenant keys and publishable keys (the widget: same allowed-origin check, CORS and limits
  as its chat) may rate their own tenant's completions only; any other id is 404
  ``completion_not_found``. The rating is stored with the version that answered; the comment only
  where the tenant stores conversations (``store_conversations``), else it is dropped. 200 with
  ``{"object": "feedback", "completion_id", "rating", "model", "comment_stored"}``.
- ``GET /v1/feedback/export?format=preference|chat`` (a secret key; the admin names ``?tenant=``)
  streams JSONL from the tenant's stored conversations that were rated: ``preference`` pairs an
  up-rated and a down-rated answer to the same messages (OpenAI's preference format: ``input``,
  ``preferred_output``, ``non_preferred_output``, ready for a DPO job), then adds the Compare tab's
  decided votes whose texts were stored (the prompt as one user message, the winner preferred);
  ``chat`` gives the up-rated conversations as supervised chat lines. Without stored conversations
  the export is empty.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.comparisons import Preference
from server.errors import bad_request, not_found
from server.rollouts.feedback import MAX_COMMENT_CHARS
from server.routes.completion_flow import admit
from server.schemas import Strict, parse_json
from server.services import services_of
from server.tenancy.auth import authenticate
from server.tenancy.cors import require_allowed_origin
from server.tenancy.scope import read_scope
from server.upload_limits import read_capped

MAX_FEEDBACK_BYTES = 16 * 1024
EXPORT_LIMIT = 10_000


class FeedbackRequest(Strict):
    completion_id: str = Field(min_length=1, max_length=100)
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS)


async def give_feedback(request: Request) -> JSONResponse:
    principal = authenticate(request, allow_publishable=True)
    body = parse_json(FeedbackRequest, await read_capped(request, MAX_FEEDBACK_BYTES))
    services = services_of(request)
    settings = None
    if principal.tenant_id is not None:
        settings = await run_in_threadpool(services.tenants.get_settings, principal.tenant_id)
        require_allowed_origin(request, principal, settings)
    admission = admit(services, principal, settings)
    try:
        served = await run_in_threadpool(services.served.get, body.completion_id)
        if served is None or (principal.tenant_id is not None and served.tenant != principal.tenant_id):
            raise not_found(f"No completion {body.completion_id!r} to rate.", code="completion_not_found")
        keep = settings is not None and settings.store_conversations
        comment = body.comment if keep else None
        await run_in_threadpool(services.feedback.rate, served, body.rating, comment)
    finally:
        admission.done()
    return JSONResponse(
        {
            "object": "feedback",
            "completion_id": served.id,
            "rating": body.rating,
            "model": served.model,
            "comment_stored": comment is not None,
        }
    )


def _preference_line(messages: list[dict[str, Any]], good: str, bad: str) -> dict[str, Any]:
    return {
        "input": {"messages": messages},
        "preferred_output": [{"role": "assistant", "content": good}],
        "non_preferred_output": [{"role": "assistant", "content": bad}],
    }


def _preference_lines(rated: Sequence[tuple[str, str]], votes: Sequence[Preference]) -> list[dict[str, Any]]:
    """Pairs of an up-rated and a down-rated answer to the same messages, then decided votes."""
    answers: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"up": [], "down": []})
    for conversation, rating in rated:
        said = json.loads(conversation)
        answers[json.dumps(said["messages"], sort_keys=True)][rating].append(said["answer"])
    lines = []
    for messages, by_rating in answers.items():
        for good, bad in zip(by_rating["up"], by_rating["down"], strict=False):
            if good == bad:
                continue  # the same answer rated both ways (greedy replies repeat): no preference in it
            lines.append(_preference_line(json.loads(messages), good, bad))
    for vote in votes:
        lines.append(_preference_line([{"role": "user", "content": vote.prompt}], vote.preferred, vote.rejected))
    return lines


def _chat_lines(rated: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    lines = []
    for conversation, rating in rated:
        if rating == "up":
            said = json.loads(conversation)
            lines.append({"messages": [*said["messages"], {"role": "assistant", "content": said["answer"]}]})
    return lines


async def export_feedback(request: Request) -> Response:
    principal = authenticate(request)
    tenant = read_scope(request, principal)
    if tenant is None:
        raise bad_request("Name the tenant to export: ?tenant=<id>.", param="tenant")
    kind = request.query_params.get("format", "preference")
    if kind not in ("preference", "chat"):
        raise bad_request("format must be 'preference' or 'chat'.", param="format")
    services = services_of(request)
    await run_in_threadpool(services.served.flush)  # completions still in the buffer are rated too
    rated = await run_in_threadpool(services.feedback.rated_conversations, tenant, EXPORT_LIMIT)
    if kind == "preference":
        votes = await run_in_threadpool(services.comparisons.preferences, tenant, EXPORT_LIMIT)
        lines = _preference_lines(rated, votes)
    else:
        lines = _chat_lines(rated)
    body = "".join(json.dumps(line) + "\n" for line in lines)
    return Response(body, media_type="application/jsonl")


routes = [
    Route("/v1/feedback", give_feedback, methods=["POST"]),
    Route("/v1/feedback/export", export_feedback, methods=["GET"]),
]
