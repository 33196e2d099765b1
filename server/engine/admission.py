"""The async side of generation: submit to the engine, read its events without blocking the loop.

:meth:`Admitter.generate` returns a :class:`Generation`, an async iterator of engine events.
The engine calls back from its worker thread; the callback only hands the event to the event
loop (``call_soon_threadsafe``), so the loop never waits on the model. A :class:`Generation`
takes its events from whatever its ``submit`` hands the request to: the local engine here, an
engine replica in a cluster (:mod:`server.cluster`); :class:`GenerationSource` is what routes
need of either. Leaving the iteration
early (a client disconnect cancels the streaming task) cancels the request in the engine, which
drops its rows at the next step. A request of ``n`` choices ends after ``n`` :class:`Finished`
events (:attr:`Generation.finished`, by choice index). Latency metrics (TTFT, inter-token, end-to-end) are taken here,
where the client's view of time is. :class:`Admitter` raises :class:`QueueFull` (a domain error;
the route answers 429 with ``Retry-After``) when the engine's queue, or one tenant's share of it,
is full.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from typing import Protocol

from server.engine.adapter_cache import AdapterHandle
from server.engine.grammar import Grammar
from server.engine.requests import Event, Finished, GenerationRequest
from server.engine.sampling import SamplingParams
from server.engine.step_loop import Engine
from server.metrics import Metrics


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Generation:
    """One request's events; iterate once. Cancels the request if abandoned.

    ``submit`` queues ``request`` (whose ``emit`` is set to this generation's, callable from any
    thread) and returns what cancels it."""

    def __init__(
        self, submit: Callable[[GenerationRequest], Cancellable], request: GenerationRequest, metrics: Metrics
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._metrics = metrics
        self._started = time.monotonic()
        self.first_token_s: float | None = None
        """Seconds from submission to the first text (time to first token), once it came."""
        self.total_s: float | None = None
        """Seconds from submission to the last choice's end, once it ended."""
        self._choices = request.n
        self.finished: dict[int, Finished] = {}
        """Each choice's last event, by index; complete when the iteration ends normally."""
        request.emit = self._from_engine
        self._handle = submit(request)

    def _from_engine(self, event: Event) -> None:
        self._loop.call_soon_threadsafe(self._events.put_nowait, event)

    def cancel(self) -> None:
        self._handle.cancel()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    @property
    def done(self) -> bool:
        return len(self.finished) == self._choices

    @property
    def tokens(self) -> tuple[int, int]:
        """Prompt tokens and completion tokens (all choices) so far."""
        ends = list(self.finished.values())
        return (ends[0].prompt_tokens if ends else 0), sum(end.completion_tokens for end in ends)

    async def __aiter__(self) -> AsyncGenerator[Event, None]:
        last = None
        try:
            while True:
                event = await self._events.get()
                now = time.monotonic()
                if isinstance(event, Finished):
                    self.finished[event.index] = event
                    if self.done:
                        self.total_s = now - self._started
                        self._metrics.e2e.observe(self.total_s)
                        self._metrics.requests.labels(outcome=self.finished[0].reason).inc()
                    yield event
                    if self.done:
                        return
                    continue
                if last is None:
                    self.first_token_s = now - self._started
                    self._metrics.ttft.observe(self.first_token_s)
                else:
                    self._metrics.inter_token.observe(now - last)
                last = now
                yield event
        finally:
            if not self.done:
                self.cancel()
                self._metrics.requests.labels(outcome="disconnected").inc()


class QueueFull(Exception):
    """The engine's waiting room (or one tenant's share of it) is full; the route answers 429."""

    retry_after_s = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class GenerationSource(Protocol):
    """What routes generate with: the local :class:`Admitter` or a cluster's."""

    def generate(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: AdapterHandle | None,
        tenant: str | None = None,
        max_running: int | None = None,
        *,
        n: int = 1,
        grammar: Grammar | None = None,
        cache_salt: str = "",
    ) -> Generation: ...


class Admitter:
    """Admission control in front of the local engine."""

    def __init__(
        self, engine: Engine, metrics: Metrics, max_waiting: int, max_waiting_per_tenant: int | None = None
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.max_waiting = max_waiting
        self.max_waiting_per_tenant = max_waiting_per_tenant or max_waiting

    def generate(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: AdapterHandle | None,
        tenant: str | None = None,
        max_running: int | None = None,
        *,
        n: int = 1,
        grammar: Grammar | None = None,
        cache_salt: str = "",
    ) -> Generation:
        """Queue a request; :class:`QueueFull` when the queue, or the tenant's share, is full."""
        if self.engine.waiting >= self.max_waiting:
            raise self._busy("The server is at capacity; retry shortly.")
        if self.engine.waiting_for(tenant) >= self.max_waiting_per_tenant:
            raise self._busy("Too many of this tenant's requests are waiting; retry shortly.")
        request = GenerationRequest(
            prompt_ids,
            params,
            adapter,
            tenant=tenant,
            max_running=max_running,
            n=n,
            constraint=grammar.matcher if grammar is not None else None,
            cache_salt=cache_salt,
        )
        return Generation(self.engine.submit, request, self.metrics)

    def _busy(self, message: str) -> QueueFull:
        self.metrics.requests.labels(outcome="rejected").inc()
        return QueueFull(message)
