"""Limits a page visitor meets, against the live server: every request counts before any work is
done for it (a prompt refused for its length still counts), one visitor (a publishable key and a
client address) cannot spend the whole tenant's budget, each publishable key has limits of its
own, and the tenant caps the widget's ``max_tokens`` under the server's ceiling. Client
addresses come from ``X-Forwarded-For``, which the server trusts from 127.0.0.1 (uvicorn's rule)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.conftest import Server, assert_openai_error, auth

pytestmark = pytest.mark.integration

SITE = "https://shop.example"


def widget_tenant(server: Server, http: httpx.Client, tenant: str, **settings: Any) -> tuple[str, str]:
    """A new tenant whose site may use its publishable key; (secret key, publishable key)."""
    created = http.post("/v1/tenants", json={"id": tenant}, headers=auth(server.admin_key))
    assert created.status_code == 201, created.text
    secret = created.json()["api_key"]
    patched = http.patch(f"/v1/tenants/{tenant}", json={"allowed_origins": [SITE], **settings}, headers=auth(secret))
    assert patched.status_code == 200, patched.text
    publishable = http.post(f"/v1/tenants/{tenant}/keys", json={"kind": "publishable"}, headers=auth(secret))
    return secret, publishable.json()["api_key"]


def visit(http: httpx.Client, key: str, address: str, content: str = "Hi", max_tokens: int = 1) -> httpx.Response:
    body = {"model": "base", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
    headers = {**auth(key), "Origin": SITE, "X-Forwarded-For": address}
    return http.post("/v1/chat/completions", json=body, headers=headers)


def test_one_visitor_cannot_spend_the_tenants_budget(server: Server, http: httpx.Client) -> None:
    _, key = widget_tenant(server, http, "visited", visitor_limits={"requests_per_minute": 2})
    assert [visit(http, key, "198.51.100.10").status_code for _ in range(2)] == [200, 200]
    refused = visit(http, key, "198.51.100.10")
    assert_openai_error(refused, 429, code="rate_limit_exceeded")
    assert "from this visitor" in refused.json()["error"]["message"] and refused.headers["retry-after"]
    assert visit(http, key, "198.51.100.11").status_code == 200  # another visitor of the same page


def test_each_publishable_key_has_its_own_limits(server: Server, http: httpx.Client) -> None:
    _, key = widget_tenant(server, http, "keyed", key_limits={"requests_per_minute": 2})
    assert [visit(http, key, f"198.51.100.{20 + i}").status_code for i in range(2)] == [200, 200]
    refused = visit(http, key, "198.51.100.29")  # a new visitor, but the key's budget is spent
    assert_openai_error(refused, 429, code="rate_limit_exceeded")
    assert "for this key" in refused.json()["error"]["message"]


def test_a_request_counts_before_any_work(server: Server, http: httpx.Client) -> None:
    secret, key = widget_tenant(server, http, "counted")
    ceiling = http.patch(
        "/v1/tenants/counted", json={"limit_ceilings": {"requests_per_minute": 2}}, headers=auth(server.admin_key)
    )
    assert ceiling.status_code == 200, ceiling.text
    too_long = "word " * 20_000  # refused before tokenizing: it cannot fit the context
    for _ in range(2):
        assert_openai_error(visit(http, key, "198.51.100.30", content=too_long), 400, code="context_length_exceeded")
    assert_openai_error(visit(http, key, "198.51.100.31"), 429, code="rate_limit_exceeded")


def test_the_tenant_caps_the_widgets_max_tokens_under_the_servers(server: Server, http: httpx.Client) -> None:
    secret, key = widget_tenant(server, http, "capped", widget_max_tokens=3)
    assert visit(http, key, "198.51.100.40", max_tokens=3).status_code == 200
    assert_openai_error(visit(http, key, "198.51.100.41", max_tokens=4), 400, code="max_tokens_too_large")
    over = http.patch("/v1/tenants/capped", json={"widget_max_tokens": 10**6}, headers=auth(secret))
    assert_openai_error(over, 400, code="invalid_setting", param="widget_max_tokens")
    loose = http.patch(
        "/v1/tenants/capped", json={"visitor_limits": {"requests_per_minute": 10**6}}, headers=auth(secret)
    )
    assert_openai_error(loose, 400, code="invalid_setting", param="visitor_limits.requests_per_minute")
