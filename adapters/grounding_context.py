"""Which passages go into a grounded prompt: the rule chat and retrieval-aware training share.

Contract:

- :func:`passage_budget` is the prompt tokens passages may take: a quarter of the context, at
  most :data:`MAX_PASSAGE_TOKENS`.
- :func:`passage_cost` is what one passage costs in that budget (its heading and text in the
  tokenizer, plus a few tokens for its number and blank lines).
- :func:`choose_passages` picks them. **Whole mode**: when every passage of the named documents
  fits the budget (a small handbook, the usual case for one business), all of them go in, in
  document order, whatever the question. The prompt then starts with the same tokens for every
  question, so the engine's prefix cache reuses their KV and retrieval adds only the question's
  prefill to time to first token; and no retrieval miss (a typo, an indirect question) can hide
  the answer. **Search mode**: otherwise the search's best hits that fit, put back into document
  order (their prefix is shared between questions as far as their hits agree).

Training (:mod:`trainer.raft`) and chat (:mod:`server.routes.retrieval`) both call these, so an
adapter trained with retrieval on sees the prompts it is served with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from adapters.grounding_template import prompt_heading

MAX_PASSAGE_TOKENS = 1024
"""The most prompt tokens passages take, whatever the context."""
MAX_WHOLE_PASSAGES = 64
"""Whole mode never puts in more passages than this (the index is asked for one more)."""

P = TypeVar("P")


def passage_budget(context_tokens: int) -> int:
    """Tokens passages may take in a prompt of a model with ``context_tokens`` of context."""
    return min(MAX_PASSAGE_TOKENS, context_tokens // 4)


def passage_cost(tokenizer: Any, heading: str, text: str) -> int:
    """One passage's tokens in the template (heading, text and its number's line)."""
    return len(tokenizer(f"{prompt_heading(heading)}\n{text}", add_special_tokens=False).input_ids) + 4


def fits_whole(every: Sequence[P] | None, cost: Callable[[P], int], budget: int) -> bool:
    """Whether ``every`` passage goes in (whole mode): some, at most :data:`MAX_WHOLE_PASSAGES`,
    within ``budget`` in all."""
    return every is not None and 0 < len(every) <= MAX_WHOLE_PASSAGES and sum(map(cost, every)) <= budget


def choose_passages(
    every: Sequence[P] | None,
    ranked: Sequence[P],
    cost: Callable[[P], int],
    budget: int,
    key: Callable[[P], Any],
) -> list[P]:
    """The passages a prompt carries (see the module docstring).

    ``every``: all passages of the named documents in document order, or None when there are
    more than :data:`MAX_WHOLE_PASSAGES`; ``ranked``: the search's hits, best first; ``key``
    identifies a passage (hits and ``every`` may be different objects for the same passage).
    """
    if fits_whole(every, cost, budget):
        assert every is not None
        return list(every)
    used: list[P] = []
    spent = 0
    for passage in ranked:
        spent += cost(passage)
        if spent > budget:
            break
        used.append(passage)
    if every is None:
        return used
    order = {key(p): i for i, p in enumerate(every)}
    return sorted(used, key=lambda p: order.get(key(p), len(order)))
