"""RateLimiter with a clock the test moves: refusals, Retry-After values, and recovery.

The live server's 429s (and their recovery) are in tests/integration/test_tenancy_http.py.
"""

from __future__ import annotations

import asyncio

import pytest

from server.errors import APIError
from server.tenancy.rate_limits import DAY_S, Level, RateLimiter, ReleaseAfter
from server.tenancy.tenant_settings import TenantLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = 20_000 * DAY_S + 3600.0  # 01:00 UTC

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> RateLimiter:
    return RateLimiter(monotonic=lambda: clock.now, wall=lambda: clock.wall)


def refused(limiter: RateLimiter, tenant: str, limits: TenantLimits, prompt: int = 0) -> int:
    """The Retry-After of the 429 ``admit`` must raise."""
    with pytest.raises(APIError) as info:
        limiter.admit(tenant, limits, prompt)
    error = info.value
    assert error.status == 429 and error.type == "rate_limit_error" and error.code == "rate_limit_exceeded"
    assert f"Retry in {error.headers['Retry-After']} s" in error.message
    return int(error.headers["Retry-After"])


def test_requests_per_minute_slide(limiter: RateLimiter, clock: Clock) -> None:
    limits = TenantLimits(requests_per_minute=3)
    for _ in range(3):
        limiter.admit("acme", limits).done()
        clock.advance(10)
    assert refused(limiter, "acme", limits) == 30  # the first one leaves the window at t=60
    limiter.admit("globex", limits).done()  # other tenants are not affected
    clock.advance(29)
    assert refused(limiter, "acme", limits) == 1
    clock.advance(1)
    limiter.admit("acme", limits).done()
    assert refused(limiter, "acme", limits) == 10


def test_concurrent_requests_free_a_slot_when_done(limiter: RateLimiter) -> None:
    limits = TenantLimits(concurrent_requests=2)
    first, second = limiter.admit("acme", limits), limiter.admit("acme", limits)
    assert refused(limiter, "acme", limits) == 1
    first.done()
    first.done()  # a second call changes nothing
    third = limiter.admit("acme", limits)
    assert refused(limiter, "acme", limits) == 1
    second.done()
    third.done()
    limiter.admit("acme", limits).done()


def test_tokens_per_day_until_midnight(limiter: RateLimiter, clock: Clock) -> None:
    limits = TenantLimits(tokens_per_day=100)
    limiter.admit("acme", limits, prompt_tokens=40).done(tokens=70)
    assert limiter.tokens_today("acme") == 70
    assert refused(limiter, "acme", limits, prompt=31) == DAY_S - 3600  # until 00:00 UTC
    limiter.admit("acme", limits, prompt_tokens=30).done(tokens=45)  # may end past the limit
    assert refused(limiter, "acme", limits, prompt=1) > 0
    clock.advance(DAY_S - 3600)
    assert limiter.tokens_today("acme") == 0
    limiter.admit("acme", limits, prompt_tokens=99).done(tokens=100)


def test_a_refused_request_counts_toward_nothing(limiter: RateLimiter) -> None:
    limits = TenantLimits(requests_per_minute=2, concurrent_requests=1)
    held = limiter.admit("acme", limits)
    for _ in range(5):
        refused(limiter, "acme", limits)
    held.done()
    limiter.admit("acme", limits).done()  # the second of two per minute
    refused(limiter, "acme", limits)


def test_unlimited_by_default(limiter: RateLimiter) -> None:
    admissions = [limiter.admit("acme", TenantLimits(), prompt_tokens=10**9) for _ in range(500)]
    for admission in admissions:
        admission.done(10**9)


def test_release_after_runs_whatever_the_response_does(limiter: RateLimiter) -> None:
    limits = TenantLimits(concurrent_requests=1)

    async def failing(scope, receive, send) -> None:
        raise ConnectionResetError("client went away")

    admission = limiter.admit("acme", limits)
    with pytest.raises(ConnectionResetError):
        asyncio.run(ReleaseAfter(failing, admission.done)({}, None, None))
    limiter.admit("acme", limits).done()  # the slot came back


def test_levels_are_admitted_together_or_not_at_all() -> None:
    limiter = RateLimiter()
    tenant, visitor = TenantLimits(requests_per_minute=10), TenantLimits(requests_per_minute=1)
    levels = [Level("acme", tenant), Level("visitor:k:1.2.3.4", visitor, " from this visitor")]
    limiter.admit_all(levels).done()
    with pytest.raises(APIError, match="from this visitor"):
        limiter.admit_all(levels)
    for _ in range(9):  # the refusal counted nowhere: the tenant still has 9 of its 10
        limiter.admit_all([Level("acme", tenant), Level("visitor:k:5.6.7.8", TenantLimits())]).done()
    with pytest.raises(APIError, match="Too many requests: the limit is 10"):
        limiter.admit("acme", tenant)


def test_a_tokenized_prompt_over_the_day_is_refused_after_admission() -> None:
    limiter = RateLimiter()
    limits = TenantLimits(tokens_per_day=100)
    limiter.admit("acme", limits).done(tokens=90)
    admission = limiter.admit("acme", limits)  # admitted before its prompt is known
    with pytest.raises(APIError, match="daily limit of 100 tokens"):
        admission.afford(20)
    admission.done()
    limiter.admit("acme", limits).afford(10)


def test_idle_counters_are_forgotten_beyond_the_bound() -> None:
    limiter = RateLimiter(max_entries=3)
    busy = limiter.admit("busy", TenantLimits(concurrent_requests=1))
    for i in range(5):
        limiter.admit(f"visitor-{i}", TenantLimits()).done()
    tracked = limiter.tracked()
    assert len(tracked) == 3 and "busy" in tracked  # in flight: never forgotten
    with pytest.raises(APIError):
        limiter.admit("busy", TenantLimits(concurrent_requests=1))
    busy.done()
