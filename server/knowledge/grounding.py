"""Retrieval for one chat request: the query, the grounded messages, the reply's citations.

Contract:

- :func:`retrieval_query` is the latest user turn, preceded by the user turn before it (a little
  context for follow-ups like "and on Sundays?"), at most :data:`MAX_QUERY_CHARS` characters.
- :func:`ground` rewrites the latest user message with the passages in
  :func:`adapters.grounding_template.grounded_question` (the template training uses too), keeping
  only the best passages that fit ``budget_tokens`` of the tokenizer; it returns the new
  messages and the passages used, best first. No user message: nothing changes.
- :func:`citations` is the reply's ``citations`` extension field: per passage used, its number in
  the prompt (``index``), ``file_id``, ``filename``, ``heading`` and its character span
  (``start``, ``end``) in the file's passage text (:mod:`trainer.passages`).
"""

from __future__ import annotations

from typing import Any

from adapters.grounding_template import grounded_question
from server.api.chat_request import ChatMessage
from server.knowledge.passage_index import Passage

MAX_QUERY_CHARS = 2000


def _last_user(messages: list[ChatMessage]) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)


def retrieval_query(messages: list[ChatMessage]) -> str:
    users = [m.text() for m in messages if m.role == "user"]
    return "\n".join(users[-2:])[-MAX_QUERY_CHARS:]


def ground(
    messages: list[ChatMessage], passages: list[Passage], tokenizer: Any, budget_tokens: int
) -> tuple[list[ChatMessage], list[Passage]]:
    last = _last_user(messages)
    if last is None or not passages:
        return messages, []
    used: list[Passage] = []
    spent = 0
    for passage in passages:
        cost = len(tokenizer(f"{passage.heading}\n{passage.text}", add_special_tokens=False).input_ids) + 4
        if spent + cost > budget_tokens:
            break
        used.append(passage)
        spent += cost
    if not used:
        return messages, []
    question = messages[last].text()
    content = grounded_question([(p.heading, p.text) for p in used], question)
    grounded = messages[last].model_copy(update={"content": content})
    return [*messages[:last], grounded, *messages[last + 1 :]], used


def citations(passages: list[Passage]) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "file_id": p.file_id,
            "filename": p.filename,
            "heading": p.heading,
            "start": p.start,
            "end": p.end,
        }
        for i, p in enumerate(passages, 1)
    ]
