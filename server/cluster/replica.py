"""One engine replica of the Ray Serve deployment: today's engine behind a multiplexed handle.

Contract:

- :func:`engine_deployment` builds the deployment class; each replica loads the base from the model
  directory it is given (the same path on every node: a shared filesystem) and starts its engine
  with ``threads`` torch threads.
- :meth:`EngineReplica.generate` (called with ``stream=True`` and the request's
  ``multiplexed_model_id``) yields one :class:`~server.cluster.remote_request.Landed`, then the
  engine's events, as the local engine emits them. Cancelling the call (the client left) cancels
  the request in the engine.
- The multiplexed "model" is the replica's claim on an adapter id: Ray Serve routes requests for an
  id to replicas holding it and drops the least recently used id beyond ``adapters_per_replica``.
  The adapter's tensors live in the engine's own byte-budgeted cache, read from the shared store on
  first use (a miss counts in ``adapter_loads``).
- :meth:`EngineReplica.describe` tells the HTTP process the served base's facts.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ray import serve

from server.cluster.remote_base import BaseFacts
from server.cluster.remote_request import Landed, RemoteRequest
from server.engine.admission import QueueFull
from server.engine.grammar import GrammarError
from server.engine.requests import Event, Finished
from server.local_engine import start_local_engine
from server.metrics import Metrics
from server.settings import Settings


class _Claim:
    """A replica's hold on one adapter id; Ray Serve calls ``__del__`` when it drops the id."""

    def __init__(self, held: dict[str, int], model_id: str, token: int) -> None:
        self._held, self._model_id, self._token = held, model_id, token
        held[model_id] = token

    def __del__(self) -> None:
        if self._held.get(self._model_id) == self._token:  # not a later claim on the same id
            del self._held[self._model_id]


def engine_deployment(adapters_per_replica: int) -> Any:
    """The replica class as a Ray Serve deployment (options are set by the caller)."""

    @serve.deployment(name="engine")
    class EngineReplica:
        def __init__(self, settings: Settings, model_dir: str, threads: int | None) -> None:
            self.metrics = Metrics()
            self.local = start_local_engine(settings, Path(model_dir), self.metrics, threads)
            self.name = serve.get_replica_context().replica_tag
            self.held: dict[str, int] = {}
            self._tokens = itertools.count()

        def describe(self) -> BaseFacts:
            return BaseFacts.of(self.local.base)

        @serve.multiplexed(max_num_models_per_replica=adapters_per_replica)  # type: ignore[untyped-decorator]
        async def claim(self, model_id: str) -> _Claim:
            return _Claim(self.held, model_id, next(self._tokens))

        async def generate(self, request: RemoteRequest) -> AsyncIterator[Landed | Event]:
            model_id = serve.get_multiplexed_model_id() or request.model_id
            held = model_id in self.held
            await self.claim(model_id)
            loads = int(self.metrics.adapter_loads._value.get())
            yield Landed(self.name, os.getpid(), held, loads, self.local.engine.running)
            try:
                grammars = self.local.grammars
                grammar = grammars.from_source(request.grammar_source) if request.grammar_source else None
                generation = self.local.admitter.generate(
                    request.prompt_ids,
                    request.params,
                    request.adapter,
                    request.tenant,
                    request.max_running,
                    n=request.n,
                    grammar=grammar,
                    cache_salt=request.cache_salt,
                )
            except (QueueFull, GrammarError) as exc:
                message = exc.message if isinstance(exc, QueueFull) else str(exc)
                for index in range(request.n):
                    yield Finished("error", len(request.prompt_ids), 0, message, index)
                return
            async for event in generation:
                yield event

        def __del__(self) -> None:
            local = getattr(self, "local", None)
            if local is not None:
                local.engine.stop()

    return EngineReplica
