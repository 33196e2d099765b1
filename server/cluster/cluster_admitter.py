"""The routes' generation source in a cluster: requests go to engine replicas through Ray Serve.

Contract:

- :meth:`ClusterAdmitter.generate` returns the same :class:`~server.engine.admission.Generation`
  as the local admitter; its events come from a replica's stream, routed by the request's adapter
  version id (Ray Serve model multiplexing).
- Admission: at most ``capacity`` requests in flight across the cluster and ``per_tenant`` for one
  tenant (:class:`~server.engine.admission.QueueFull`, the route's 429, beyond them); Ray Serve's
  own queue limits stay behind these.
- Leaving a generation early cancels the call, and with it the rows on the replica. A call that
  fails (the replica died, Ray refused it) ends the request's unfinished choices with an error
  event naming no internals; other requests are untouched.
- Each answer's :class:`~server.cluster.remote_request.Landed` updates the per-replica metrics
  (``swaplora_replica_requests{replica,held}``, ``swaplora_replica_adapter_loads{replica}``) and
  the :class:`~server.cluster.replica_board.ReplicaBoard`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from server.cluster.remote_request import Landed, RemoteRequest
from server.cluster.replica_board import ReplicaBoard
from server.engine.adapter_cache import AdapterHandle
from server.engine.admission import Generation, QueueFull
from server.engine.grammar import Grammar
from server.engine.requests import Finished, GenerationRequest
from server.engine.sampling import SamplingParams
from server.metrics import Metrics

log = logging.getLogger(__name__)
REPLICA_FAILED = "The engine replica serving this request failed; retry the request."


class ClusterAdmitter:
    def __init__(self, handle: Any, metrics: Metrics, capacity: int, per_tenant: int, board: ReplicaBoard) -> None:
        self.handle = handle
        """The engine deployment's Ray Serve handle."""
        self.metrics = metrics
        self.board = board
        """What each replica was seen doing (``GET /v1/cluster/replicas``)."""
        self.capacity = capacity
        self.per_tenant = per_tenant
        self._in_flight: Counter[str | None] = Counter()

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

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
        if self.in_flight >= self.capacity:
            raise self._busy("The server is at capacity; retry shortly.")
        if self._in_flight[tenant] >= self.per_tenant:
            raise self._busy("Too many of this tenant's requests are in flight; retry shortly.")
        remote = RemoteRequest(
            prompt_ids, params, adapter, tenant, max_running, n, grammar.source if grammar else None, cache_salt
        )
        request = GenerationRequest(prompt_ids, params, adapter, tenant=tenant, max_running=max_running, n=n)
        return Generation(lambda local: _Call(self, remote, local), request, self.metrics)

    def _busy(self, message: str) -> QueueFull:
        self.metrics.requests.labels(outcome="rejected").inc()
        return QueueFull(message)

    def _landed(self, landed: Landed, model_id: str) -> None:
        self.board.landed(landed, model_id)
        self.metrics.replica_requests.labels(replica=landed.replica, held=str(landed.held).lower()).inc()
        self.metrics.replica_adapter_loads.labels(replica=landed.replica).set(landed.adapter_loads)


class _Call:
    """One request's call to a replica, pumped into its generation; cancellable."""

    def __init__(self, cluster: ClusterAdmitter, remote: RemoteRequest, local: GenerationRequest) -> None:
        self._cluster, self._remote, self._local = cluster, remote, local
        self._response: Any = None
        cluster._in_flight[remote.tenant] += 1
        self._task = asyncio.get_running_loop().create_task(self._pump(), name="swaplora-replica-call")
        # A done callback, not a finally: it also runs for a task cancelled before it ever started.
        self._task.add_done_callback(self._release)

    def cancel(self) -> None:
        if self._response is not None:
            self._response.cancel()
        self._task.cancel()

    async def _pump(self) -> None:
        finished: set[int] = set()
        try:
            options = self._cluster.handle.options(multiplexed_model_id=self._remote.model_id, stream=True)
            self._response = options.generate.remote(self._remote)
            async for item in self._response:
                if isinstance(item, Landed):
                    self._cluster._landed(item, self._remote.model_id)
                    continue
                if isinstance(item, Finished):
                    finished.add(item.index)
                self._local.emit(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("an engine replica call failed (%s)", self._remote.model_id)
            for index in range(self._remote.n):
                if index not in finished:
                    self._local.emit(Finished("error", len(self._remote.prompt_ids), 0, REPLICA_FAILED, index))

    def _release(self, _task: asyncio.Task[None]) -> None:
        in_flight = self._cluster._in_flight
        in_flight[self._remote.tenant] -= 1
        if in_flight[self._remote.tenant] <= 0:
            del in_flight[self._remote.tenant]
