"""What crosses from the HTTP process to an engine replica and back, all plain picklable data.

Contract: a :class:`RemoteRequest` is a :class:`~server.engine.requests.GenerationRequest` without
its callbacks: the grammar travels as llguidance's grammar text (the replica compiles it for its
own copy of the tokenizer), the adapter as its id and path in the shared store. A replica answers
with one :class:`Landed` first (which replica took the request, its process, whether it already
held the adapter, how many adapters it has loaded so far), then the engine's events.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.engine.adapter_cache import AdapterHandle
from server.engine.sampling import SamplingParams

BASE_ID = "base"
"""The multiplexed model id of requests without an adapter."""


@dataclass(frozen=True)
class RemoteRequest:
    prompt_ids: list[int]
    params: SamplingParams
    adapter: AdapterHandle | None
    tenant: str | None
    max_running: int | None
    n: int
    grammar_source: str | None
    cache_salt: str

    @property
    def model_id(self) -> str:
        """The id Ray Serve routes by: the adapter's immutable version id, or ``base``."""
        return self.adapter.key if self.adapter is not None else BASE_ID


@dataclass(frozen=True)
class Landed:
    """Where a request landed (the first item of every replica's answer)."""

    replica: str
    pid: int
    """The replica's process id on its node."""
    held: bool
    """The replica held the request's adapter id before this request (routing found it)."""
    adapter_loads: int
    """Adapters this replica has read from the store since it started (its engine's cache misses)."""
    running: int
    """Rows in the replica's running batch when the request arrived (before it joined)."""
