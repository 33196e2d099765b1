"""Retrieval for a chat request, where its tenant turned it on (``retrieval`` tenant setting).

Contract: :func:`retrieve` returns the messages to render and the reply's ``citations`` (None when
retrieval is off for the request's tenant: the reply then carries no such field). With retrieval
on, the latest user turn (with the one before it) is looked up in the tenant's passages of the
files its setting names (at most ``top_k`` hits), and the passages go into that turn within
:func:`adapters.grounding_context.passage_budget` of the context limit: all of the files' passages
when they fit (whole mode), else the hits that fit (:mod:`server.knowledge.grounding`). No
passage leaves the messages as they were; the citations are the hits in the prompt (``[]`` for
none). The tenant is the caller's, or for the admin the adapter's owner: the
same tenant whose settings the request follows.
"""

from __future__ import annotations

from typing import Any

from adapters.grounding_context import MAX_WHOLE_PASSAGES, passage_budget
from server.api.chat_request import ChatMessage
from server.knowledge.grounding import citations, ground, prompt_passages, retrieval_query
from server.routes.completion_flow import Preflight


def retrieve(flight: Preflight, messages: list[ChatMessage]) -> tuple[list[ChatMessage], list[dict[str, Any]] | None]:
    settings = flight.settings
    tenant = flight.settings_tenant
    if settings is None or tenant is None or not settings.retrieval.enabled:
        return messages, None
    services = flight.services
    assert services.base is not None
    setting = settings.retrieval
    hits = services.knowledge.search(tenant, retrieval_query(messages), setting.files, setting.top_k)
    every = services.knowledge.file_passages(tenant, setting.files, MAX_WHOLE_PASSAGES)
    used = prompt_passages(every, hits, services.base.tokenizer, passage_budget(flight.context_limit))
    return ground(messages, used), citations(used, hits)
