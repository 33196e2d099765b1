"""The engine's waiting room: one FIFO per tenant, served round-robin across tenants.

Thread-safe (submitters put from the event loop's thread, the engine worker gets). ``get`` takes
the oldest request of the tenant whose turn it is, then moves that tenant to the back of the
line, so one tenant's burst of a hundred requests delays another tenant's single request by at
most one admission, never by the whole burst. Requests without a tenant (the admin) share one
lane of their own. Counts are kept per tenant for the admitter's per-tenant cap. ``get`` may
pass over tenants the caller says have no room (the engine's per-tenant cap on batch rows).
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Round-robin over per-tenant FIFOs; see the module docstring."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._lanes: OrderedDict[str | None, deque[T]] = OrderedDict()
        self._size = 0

    def put(self, tenant: str | None, item: T) -> None:
        with self._ready:
            self._lanes.setdefault(tenant, deque()).append(item)
            self._size += 1
            self._ready.notify()

    def get(self, timeout: float | None = None, admissible: Callable[[str | None, T], bool] | None = None) -> T:
        """The next item in round-robin order; waits up to ``timeout`` (None: forever, 0: not at
        all) and raises :class:`queue.Empty` if none came. With ``admissible``, lanes whose oldest
        item it refuses are passed over (keeping their place in line); Empty if it refuses all."""
        with self._ready:
            if not self._size and timeout != 0:
                self._ready.wait_for(lambda: self._size > 0, timeout)
            ready = ((t, lane) for t, lane in self._lanes.items() if admissible is None or admissible(t, lane[0]))
            tenant, lane = next(ready, (None, None))
            if lane is None:
                raise queue.Empty
            item = lane.popleft()
            self._size -= 1
            if lane:
                self._lanes.move_to_end(tenant)  # its turn is over; the others go first
            else:
                del self._lanes[tenant]
            return item

    def get_nowait(self) -> T:
        return self.get(timeout=0)

    def qsize(self) -> int:
        return self._size

    def waiting(self, tenant: str | None) -> int:
        """Items queued for ``tenant``."""
        with self._ready:
            lane = self._lanes.get(tenant)
            return len(lane) if lane else 0

    def empty(self) -> bool:
        return self._size == 0
