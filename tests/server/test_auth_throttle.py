"""A client that keeps presenting wrong keys is refused with 429 for a while; memory stays bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import APIError
from server.tenancy.auth_throttle import AuthThrottle
from tests.server.helpers import assert_error, bearer, make_client


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_over_the_limit_waits_out_the_window() -> None:
    clock = Clock()
    throttle = AuthThrottle(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        throttle.check("1.2.3.4")
        throttle.record("1.2.3.4")
    with pytest.raises(APIError) as info:
        throttle.check("1.2.3.4")
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "60"
    throttle.check("5.6.7.8")  # others are not affected
    clock.now += 61
    throttle.check("1.2.3.4")  # the window has passed


def test_tracked_addresses_are_bounded() -> None:
    throttle = AuthThrottle(max_failures=2, max_addresses=100)
    for i in range(1000):
        throttle.record(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle.tracked()) == 100


def test_guessing_keys_over_http_gets_429(tmp_path: Path) -> None:
    client = make_client(tmp_path, auth_failures_per_minute=5)
    for _ in range(5):
        assert_error(client.get("/v1/tenants", headers=bearer("sk-swl-guess")), 401, "invalid_api_key")
    refused = client.get("/v1/tenants", headers=bearer("sk-swl-guess"))
    assert_error(refused, 429, "rate_limit_exceeded")
    assert int(refused.headers["retry-after"]) >= 1
