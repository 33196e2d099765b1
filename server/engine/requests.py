"""What goes into the engine and what comes out: a :class:`GenerationRequest`, its events.

Contract:
- A request carries its prompt ids, its :class:`~server.engine.sampling.SamplingParams`, its
  adapter, ``n`` (choices: each its own batch row, all sharing one prefill of the prompt) and an
  optional ``constraint`` factory (one :class:`RowConstraint` per row: a grammar that masks the
  logits, e.g. a JSON schema).
- The engine emits, from its worker thread, :class:`TextDelta` pieces tagged with the choice
  ``index`` and exactly one :class:`Finished` per choice; a request is over after ``n`` of them.
- With ``params.logprobs`` set, every generated token (EOS excepted) is reported once, as a
  :class:`TokenLogprob`, in the delta that carries its text or, when its text is held back
  (an unfinished character, a possible stop string), in a later delta or the ``Finished``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from server.engine.adapter_cache import AdapterHandle
from server.engine.sampling import SamplingParams


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, its log-probability and the most likely alternatives (best first)."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """New text for the client, for choice ``index``."""

    text: str
    index: int = 0
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Finished:
    """The last event of one choice."""

    reason: str
    """``stop`` (EOS, a stop string, or the constraint complete), ``length``, ``cancelled`` or ``error``."""
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None
    index: int = 0
    logprobs: tuple[TokenLogprob, ...] = ()
    """Tokens whose logprobs were not sent with a delta yet."""
    cached_tokens: int = 0
    """Prompt tokens served from the prefix cache (not prefilled)."""
    prompt_logprobs: tuple[TokenLogprob, ...] = ()
    """The prompt's own tokens, when ``params.prompt_logprobs`` asked (choice 0 only)."""


Event = TextDelta | Finished


class RowConstraint(Protocol):
    """A grammar's state for one batch row (see :mod:`server.engine.grammar`)."""

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the allowed tokens into row ``row`` of an int32 bitmask ``[rows, (vocab+31)//32]``."""

    def accept(self, token: int) -> bool:
        """Consume a sampled token; False if it broke the grammar (the row then ends)."""

    @property
    def finished(self) -> bool:
        """The grammar is complete: nothing but end-of-sequence may follow."""

    @property
    def error(self) -> str | None:
        """Why the row cannot go on (a parser limit hit), once :meth:`accept` returned False."""


@dataclass
class GenerationRequest:
    """A tokenized prompt plus how to continue it."""

    prompt_ids: list[int]
    params: SamplingParams
    adapter: AdapterHandle | None = None
    emit: Callable[[Event], None] = lambda event: None
    submitted_at: float = field(default_factory=time.monotonic)
    tenant: str | None = None
    """Who asked (None: the admin); waiting requests are admitted round-robin across tenants."""
    max_running: int | None = None
    """Rows of the batch the tenant's requests may hold at once; this one waits while they do."""
    n: int = 1
    """Choices to generate, each its own row of the batch."""
    constraint: Callable[[], RowConstraint] | None = None
    """Makes a fresh grammar state for each row; None: free text."""
    cache_salt: str = ""
    """Isolates prefix-cache entries: only requests with the same salt (and adapter) share them."""


class RequestHandle:
    """Lets the submitter stop a request; safe to call from any thread, any number of times."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()
