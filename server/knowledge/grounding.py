"""Retrieval for one chat request: the query, the passages, the grounded messages, the citations.

Contract:

- :func:`retrieval_query` is the latest user turn, preceded by the user turn before it (a little
  context for follow-ups like "and on Sundays?"), at most :data:`MAX_QUERY_CHARS` characters.
- :func:`prompt_passages` is what the prompt carries, by the rule training shares
  (:func:`adapters.grounding_context.choose_passages`): every passage of the named files in
  document order when they all fit ``budget_tokens`` (whole mode), else the search's best hits
  that fit, in document order. Passage costs are remembered per tokenizer and passage text.
  :func:`whole_mode` tells which of the two it is before any search.
- :func:`ground` rewrites the latest user message with those passages in
  :func:`adapters.grounding_template.grounded_question` (the template training uses too). No
  user message or no passage: nothing changes.
- :func:`citations` is the reply's ``citations`` extension field: the search's hits that are in
  the prompt, best first, each with its number in the prompt (``index``), ``file_id``,
  ``filename``, ``heading`` and its character span (``start``, ``end``) in the file's passage
  text (:mod:`trainer.passages`). In whole mode the prompt holds more than the hits; the hits are
  what answers the question.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from adapters.grounding_context import choose_passages, fits_whole, passage_cost
from adapters.grounding_template import grounded_question
from server.api.chat_request import ChatMessage
from server.knowledge.passage_index import Passage

MAX_QUERY_CHARS = 2000
MAX_COSTS_KEPT = 8192
"""Passage costs remembered (least recently used dropped; a passage is at most a few KB)."""


def _last_user(messages: list[ChatMessage]) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)


def retrieval_query(messages: list[ChatMessage]) -> str:
    users = [m.text() for m in messages if m.role == "user"]
    return "\n".join(users[-2:])[-MAX_QUERY_CHARS:]


def _key(passage: Passage) -> tuple[str, int]:
    return passage.file_id, passage.start


@functools.lru_cache(maxsize=MAX_COSTS_KEPT)
def _cost(tokenizer: Any, heading: str, text: str) -> int:
    """A passage's token cost, kept: whole mode costs every passage of the files on every request."""
    return passage_cost(tokenizer, heading, text)


def _priced(tokenizer: Any) -> Callable[[Passage], int]:
    return lambda p: _cost(tokenizer, p.heading, p.text)


def prompt_passages(
    every: list[Passage] | None, hits: list[Passage], tokenizer: Any, budget_tokens: int
) -> list[Passage]:
    return choose_passages(every, hits, _priced(tokenizer), budget_tokens, _key)


def whole_mode(every: list[Passage] | None, tokenizer: Any, budget_tokens: int) -> bool:
    """Whether every passage of the named files goes into the prompt (then the search only cites)."""
    return fits_whole(every, _priced(tokenizer), budget_tokens)


def ground(messages: list[ChatMessage], passages: list[Passage]) -> list[ChatMessage]:
    last = _last_user(messages)
    if last is None or not passages:
        return messages
    content = grounded_question([(p.heading, p.text) for p in passages], messages[last].text())
    grounded = messages[last].model_copy(update={"content": content})
    return [*messages[:last], grounded, *messages[last + 1 :]]


def citations(used: list[Passage], hits: list[Passage]) -> list[dict[str, Any]]:
    number = {_key(p): i for i, p in enumerate(used, 1)}
    return [
        {
            "index": number[_key(p)],
            "file_id": p.file_id,
            "filename": p.filename,
            "heading": p.heading,
            "start": p.start,
            "end": p.end,
        }
        for p in hits
        if _key(p) in number
    ]
