"""Chat limits per tenant, per publishable key and per page visitor: requests per minute, tokens
per day, concurrent requests.

Contract: :meth:`RateLimiter.admit` either admits a request, returning an :class:`Admission`
whose :meth:`~Admission.done` must be called once the request ends (any number of calls, only
the first counts), or raises a 429 in OpenAI's shape (``rate_limit_error``,
``code="rate_limit_exceeded"``) with ``Retry-After`` in whole seconds:

- ``requests_per_minute``: a sliding 60-second window of admitted requests; Retry-After is when
  the oldest one leaves the window.
- ``tokens_per_day``: prompt + completion tokens counted per UTC day when a request ends; a
  request is refused while the day's count plus its prompt would pass the limit, until
  midnight UTC (the chat route admits before tokenizing, then :meth:`Admission.afford` checks
  the tokenized prompt). A request already running may end past the limit; the next is refused.
- ``concurrent_requests``: requests admitted and not yet done; Retry-After is 1.
- ``concurrent_jobs`` (:func:`check_concurrent_jobs`, at job creation): jobs not yet finished.

:meth:`RateLimiter.admit_all` checks several :class:`Level` s at once (a publishable key's
request counts against its tenant, its key and its visitor, i.e. the key and the client address)
and admits at all or none. A refused request counts toward nothing. ``None`` limits are unlimited. The
counters live in this
process's memory: they start from zero when the server restarts, and a deployment that ran
several server processes would need a shared store (one process owns the GPU, so there is one).
The clock is injectable so tests can move time instead of waiting for it.

:class:`ReleaseAfter` ends an admission when a streamed response ends, however it ends (done,
client gone, error), since a streaming route returns before its body is sent.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import APIError
from server.tenancy.tenant_settings import TenantLimits

WINDOW_S = 60.0
DAY_S = 86400


@dataclass
class _TenantUsage:
    admitted: deque[float] = field(default_factory=deque)
    """Monotonic times of requests admitted in the last window."""
    in_flight: int = 0
    day: int = -1
    """The UTC day (days since the epoch) ``tokens`` counts."""
    tokens: int = 0


def rate_limited(message: str, retry_after_s: float) -> APIError:
    seconds = max(1, math.ceil(retry_after_s))
    return APIError(
        429,
        f"{message} Retry in {seconds} s.",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(seconds)},
    )


@dataclass(frozen=True)
class Level:
    """One set of limits a request counts against: a tenant, one of its keys, or one visitor."""

    key: str
    """Names the counters (``acme``, ``key:<digest>``, ``visitor:<digest>:<address>``)."""
    limits: TenantLimits
    who: str = ""
    """How a refusal names it (``" for this key"``, ``" from this visitor"``); empty for the tenant."""


class Admission:
    """An admitted request; call :meth:`done` with the tokens it used when it ends."""

    def __init__(self, limiter: RateLimiter | None, levels: tuple[Level, ...] = ()) -> None:
        self._limiter = limiter
        self._levels = levels
        self._done = False

    def afford(self, prompt_tokens: int) -> None:
        """429 when the prompt, now tokenized, would pass a level's ``tokens_per_day`` (the
        request was admitted before its prompt was tokenized; it still counts as made)."""
        if self._limiter is not None:
            self._limiter._afford(self._levels, prompt_tokens)

    def done(self, tokens: int = 0) -> None:
        if self._done:
            return
        self._done = True
        if self._limiter is not None:
            for level in self._levels:
                self._limiter._finish(level.key, tokens)


class ReleaseAfter:
    """An ASGI response that calls ``release`` once ``response`` has been sent or abandoned."""

    def __init__(self, response: ASGIApp, release: Callable[[], None]) -> None:
        self.response = response
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            self.release()


def check_concurrent_jobs(limits: TenantLimits, active_jobs: int) -> None:
    """429 while a tenant already has ``limits.concurrent_jobs`` fine-tuning jobs not finished."""
    if limits.concurrent_jobs is not None and active_jobs >= limits.concurrent_jobs:
        raise rate_limited(
            f"Too many fine-tuning jobs at once: the limit is {limits.concurrent_jobs}; "
            "wait for one to finish or cancel one.",
            60,
        )


UNLIMITED = Admission(None)
"""The admission of a caller no limit applies to (the admin)."""


class RateLimiter:
    """In-memory usage per tenant, key or visitor, checked against that level's :class:`TenantLimits`.

    Memory is bounded: beyond ``max_entries`` counters, the least recently used idle ones (no
    request in flight) are forgotten, which only ever lets a forgotten visitor in sooner.
    """

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_entries: int = 100_000,
    ):
        self._monotonic = monotonic
        self._wall = wall
        self._lock = threading.Lock()
        self._usage: OrderedDict[str, _TenantUsage] = OrderedDict()
        self.max_entries = max_entries

    def admit(self, tenant_id: str, limits: TenantLimits, prompt_tokens: int = 0) -> Admission:
        """Admit one request of ``tenant_id`` or raise the 429 of the first limit it would pass."""
        return self.admit_all([Level(tenant_id, limits)], prompt_tokens)

    def admit_all(self, levels: Sequence[Level], prompt_tokens: int = 0) -> Admission:
        """Admit one request at every level or at none: the 429 of the first limit it would pass
        (a refused request counts toward nothing at any level)."""
        with self._lock:
            now = self._monotonic()
            usages = [self._usage.get(level.key) or _TenantUsage() for level in levels]
            for level, usage in zip(levels, usages):
                self._check(level, usage, now, prompt_tokens)
            for level, usage in zip(levels, usages):
                usage.admitted.append(now)
                usage.in_flight += 1
                self._usage[level.key] = usage
                self._usage.move_to_end(level.key)
            self._forget_idle()
        return Admission(self, tuple(levels))

    def _check(self, level: Level, usage: _TenantUsage, now: float, prompt_tokens: int) -> None:
        limits, who = level.limits, level.who
        while usage.admitted and usage.admitted[0] <= now - WINDOW_S:
            usage.admitted.popleft()
        self._roll_day(usage)
        if limits.concurrent_requests is not None and usage.in_flight >= limits.concurrent_requests:
            raise rate_limited(f"Too many requests at once{who}: the limit is {limits.concurrent_requests}.", 1)
        rpm = limits.requests_per_minute
        if rpm is not None and len(usage.admitted) >= rpm:
            oldest = usage.admitted[-rpm]
            raise rate_limited(f"Too many requests{who}: the limit is {rpm} per minute.", oldest + WINDOW_S - now)
        self._check_daily(level, usage, prompt_tokens)

    def _check_daily(self, level: Level, usage: _TenantUsage, prompt_tokens: int) -> None:
        daily = level.limits.tokens_per_day
        if daily is not None and usage.tokens + prompt_tokens > daily:
            until_midnight = DAY_S - self._wall() % DAY_S
            raise rate_limited(f"The daily limit of {daily} tokens{level.who} is used up.", until_midnight)

    def _afford(self, levels: Sequence[Level], prompt_tokens: int) -> None:
        with self._lock:
            for level in levels:
                usage = self._usage[level.key]
                self._roll_day(usage)
                self._check_daily(level, usage, prompt_tokens)

    def _forget_idle(self) -> None:
        if len(self._usage) <= self.max_entries:
            return
        for key in [k for k, u in self._usage.items() if not u.in_flight][: len(self._usage) - self.max_entries]:
            del self._usage[key]

    def tracked(self) -> set[str]:
        """The levels whose counters are held now (the memory bound's subject)."""
        with self._lock:
            return set(self._usage)

    def tokens_today(self, tenant_id: str) -> int:
        with self._lock:
            usage = self._usage.get(tenant_id)
            if usage is None:
                return 0
            self._roll_day(usage)
            return usage.tokens

    def _roll_day(self, usage: _TenantUsage) -> None:
        today = int(self._wall() // DAY_S)
        if usage.day != today:
            usage.day, usage.tokens = today, 0

    def _finish(self, tenant_id: str, tokens: int) -> None:
        with self._lock:
            usage = self._usage[tenant_id]
            usage.in_flight -= 1
            self._roll_day(usage)
            usage.tokens += max(0, tokens)
