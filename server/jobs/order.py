"""Which queued training jobs start next: round-robin across tenants, oldest first within one.

:func:`fair_order` takes the queued jobs (oldest first) and the tenants of the jobs running now,
and returns the next ``slots`` jobs to start: each pick goes to the tenant with the fewest jobs
running (counting the picks before it), and among equals to the tenant whose oldest queued job
is oldest. One tenant that queues a hundred jobs therefore waits its turn behind every other
tenant's first job instead of holding the trainer for a hundred runs. The work is
O(queued + slots x log tenants).
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar


class _Queued(Protocol):
    @property
    def tenant(self) -> str: ...


J = TypeVar("J", bound=_Queued)


def fair_order(queued: Sequence[J], running_tenants: Iterable[str], slots: int) -> list[J]:
    """The next ``slots`` jobs of ``queued`` (oldest first) to start; see the module docstring."""
    lanes: dict[str, deque[tuple[int, J]]] = {}
    for age, job in enumerate(queued):
        lanes.setdefault(job.tenant, deque()).append((age, job))
    running = Counter(running_tenants)
    heap = [(running[tenant], lane[0][0], tenant) for tenant, lane in lanes.items()]
    heapq.heapify(heap)
    picked: list[J] = []
    while heap and len(picked) < slots:
        count, _, tenant = heapq.heappop(heap)
        lane = lanes[tenant]
        picked.append(lane.popleft()[1])
        if lane:
            heapq.heappush(heap, (count + 1, lane[0][0], tenant))
    return picked
