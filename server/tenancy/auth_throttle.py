"""Failed authentications per client address: a stranger guessing keys gets a 429, not answers.

Contract: :meth:`AuthThrottle.check` raises 429 ``rate_limit_exceeded`` (with ``Retry-After``)
while the address has had :attr:`AuthThrottle.max_failures` failed authentications (a wrong key)
within the last :attr:`AuthThrottle.window_s` seconds; :meth:`AuthThrottle.record` counts one.
A correct key is never slowed down by others' failures, only by its own address's. Memory is
bounded: at most ``max_addresses`` addresses are tracked (the least recently failing is dropped)
and each keeps at most ``max_failures`` timestamps. Behind a reverse proxy the address comes from
``X-Forwarded-For`` where uvicorn trusts the proxy (127.0.0.1, or ``FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from server.tenancy.rate_limits import rate_limited


class AuthThrottle:
    """See the module docstring."""

    def __init__(
        self,
        max_failures: int = 20,
        window_s: float = 60.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """429 while ``address`` is over the limit."""
        now = self._clock()
        with self._lock:
            recent = self._failures.get(address)
            while recent and recent[0] <= now - self.window_s:
                recent.popleft()
            if recent is None or len(recent) < self.max_failures:
                return
            wait = recent[0] + self.window_s - now
        raise rate_limited("Too many failed authentications from this address; retry later.", math.ceil(wait))

    def tracked(self) -> set[str]:
        """The addresses whose failures are held now (the memory bound's subject)."""
        with self._lock:
            return set(self._failures)

    def record(self, address: str) -> None:
        """Count one failed authentication of ``address``."""
        with self._lock:
            recent = self._failures.pop(address, None) or deque(maxlen=self.max_failures)
            recent.append(self._clock())
            self._failures[address] = recent  # most recent last
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
