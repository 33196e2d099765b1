"""What the HTTP process has seen of each engine replica, for operators and tests.

Contract: :meth:`ReplicaBoard.landed` records one request's :class:`~server.cluster.remote_request.Landed`
and the adapter id it carried; :meth:`ReplicaBoard.snapshot` lists, per replica, its process id,
requests, requests that found their adapter already held, adapter loads (its own count), the rows
it was running when the last request arrived, and the adapter ids that last landed there (most
recent first). Bounded: at most :data:`MAX_REPLICAS` replicas (the longest unseen goes first)
and ``adapters_per_replica`` ids each, so autoscaling churn and many tenants cannot grow it.
Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from server.cluster.remote_request import Landed

MAX_REPLICAS = 256


@dataclass
class _Replica:
    pid: int
    requests: int = 0
    held: int = 0
    adapter_loads: int = 0
    running: int = 0
    last_seen: float = 0.0
    adapters: OrderedDict[str, None] = field(default_factory=OrderedDict)


class ReplicaBoard:
    def __init__(self, adapters_per_replica: int) -> None:
        self.adapters_per_replica = adapters_per_replica
        self._replicas: OrderedDict[str, _Replica] = OrderedDict()
        self._lock = threading.Lock()

    def landed(self, landed: Landed, model_id: str) -> None:
        with self._lock:
            replica = self._replicas.pop(landed.replica, None) or _Replica(landed.pid)
            self._replicas[landed.replica] = replica
            if len(self._replicas) > MAX_REPLICAS:
                self._replicas.popitem(last=False)
            replica.pid = landed.pid
            replica.requests += 1
            replica.held += landed.held
            replica.adapter_loads = landed.adapter_loads
            replica.running = landed.running
            replica.last_seen = time.time()
            replica.adapters.pop(model_id, None)
            replica.adapters[model_id] = None
            while len(replica.adapters) > self.adapters_per_replica:
                replica.adapters.popitem(last=False)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "object": "cluster.replica",
                    "id": name,
                    "pid": r.pid,
                    "requests": r.requests,
                    "requests_adapter_held": r.held,
                    "adapter_loads": r.adapter_loads,
                    "running_at_last_request": r.running,
                    "adapters": list(reversed(r.adapters)),
                    "last_seen": int(r.last_seen),
                }
                for name, r in self._replicas.items()
            ]
