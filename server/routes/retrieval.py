"""Retrieval for a chat request, where its tenant turned it on (``retrieval`` tenant setting).

Contract: :func:`retrieve` returns the messages to render and a :data:`Citing`: what computes the
reply's ``citations`` (None when retrieval is off for the request's tenant: the reply then carries
no such field). With retrieval on, the latest user turn (with the one before it) is looked up in
the tenant's passages of the files its setting names (at most ``top_k`` hits, by words and meaning:
:mod:`server.knowledge.knowledge_base`), and the passages go into that turn within
:func:`adapters.grounding_context.passage_budget` of the context limit: all of the files' passages
when they fit (whole mode), else the hits that fit (:mod:`server.knowledge.grounding`). In whole
mode the prompt does not depend on the search, so the search (and its query embedding, 10-20 ms on
a CPU core) runs only when the citations are asked for, after generation: it adds nothing to time
to first token. In search mode it runs first and the citations are ready. No passage leaves the
messages as they were; the citations are the hits in the prompt (``[]`` for none); :func:`cite`
computes them, off the event loop. The tenant is the caller's, or for the admin the adapter's
owner: the same tenant whose settings the request follows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from adapters.grounding_context import MAX_WHOLE_PASSAGES, passage_budget
from server.api.chat_request import ChatMessage
from server.knowledge.grounding import citations, ground, prompt_passages, retrieval_query, whole_mode
from server.routes.completion_flow import Preflight

log = logging.getLogger(__name__)
Citing = Callable[[], list[dict[str, Any]]]


async def cite(citing: Citing | None) -> list[dict[str, Any]] | None:
    """The reply's citations (None: retrieval was off). A search that fails after the answer was
    generated costs the citations only (``[]``, logged), never the answer."""
    if citing is None:
        return None
    try:
        return await run_in_threadpool(citing)
    except Exception:
        log.exception("the citations of a grounded reply could not be computed")
        return []


def retrieve(flight: Preflight, messages: list[ChatMessage]) -> tuple[list[ChatMessage], Citing | None]:
    settings = flight.settings
    tenant = flight.settings_tenant
    if settings is None or tenant is None or not settings.retrieval.enabled:
        return messages, None
    services = flight.services
    assert services.base is not None
    setting = settings.retrieval
    tokenizer, budget = services.base.tokenizer, passage_budget(flight.context_limit)
    query = retrieval_query(messages)

    def search() -> list[Any]:
        return services.knowledge.search(tenant, query, setting.files, setting.top_k)

    every = services.knowledge.file_passages(tenant, setting.files, MAX_WHOLE_PASSAGES)
    if whole_mode(every, tokenizer, budget):
        assert every is not None
        return ground(messages, every), lambda: citations(every, search())
    hits = search()
    used = prompt_passages(every, hits, tokenizer, budget)
    cited = citations(used, hits)
    return ground(messages, used), lambda: cited
