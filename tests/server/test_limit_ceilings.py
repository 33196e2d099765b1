"""Limits are the operator's: the admin sets ceilings (new tenants start from the server's
defaults), a tenant may only lower them, and what is enforced is the lower of the two."""

from __future__ import annotations

from pathlib import Path

from tests.server.helpers import ADMIN, UNSET_NEWER_LIMITS, assert_error, bearer, make_client


def test_a_tenant_can_lower_its_limits_but_never_raise_or_clear_the_ceilings(tmp_path: Path) -> None:
    client = make_client(tmp_path, default_limit_ceilings={"requests_per_minute": 30, "concurrent_requests": 4})
    created = client.post("/v1/tenants", json={"id": "acme"}, headers=ADMIN).json()
    assert created["limit_ceilings"]["requests_per_minute"] == 30  # the server's defaults for new tenants
    assert created["effective_limits"] == {
        "requests_per_minute": 30,
        "tokens_per_day": None,
        "concurrent_requests": 4,
        "concurrent_jobs": None,
        **UNSET_NEWER_LIMITS,
    }
    tenant = bearer(created["api_key"])

    lowered = client.patch("/v1/tenants/acme", json={"limits": {"requests_per_minute": 10}}, headers=tenant)
    assert lowered.status_code == 200 and lowered.json()["effective_limits"]["requests_per_minute"] == 10
    # the review's attack: a tenant's own key clearing every limit
    cleared = client.patch("/v1/tenants/acme", json={"limits": None}, headers=tenant).json()
    assert (
        cleared["effective_limits"]["requests_per_minute"] == 30
        and cleared["effective_limits"]["concurrent_requests"] == 4
    )
    over = client.patch("/v1/tenants/acme", json={"limits": {"requests_per_minute": 31}}, headers=tenant)
    assert_error(over, 400, "invalid_setting")
    assert over.json()["error"]["param"] == "limits.requests_per_minute"
    for change in ({"limit_ceilings": None}, {"limit_ceilings": {"requests_per_minute": 1000}}):
        assert_error(client.patch("/v1/tenants/acme", json=change, headers=tenant), 403, "admin_required")
    assert client.get("/v1/tenants/acme", headers=tenant).json()["limit_ceilings"]["requests_per_minute"] == 30

    raised = client.patch("/v1/tenants/acme", json={"limit_ceilings": {"requests_per_minute": 100}}, headers=ADMIN)
    assert raised.status_code == 200 and raised.json()["effective_limits"]["requests_per_minute"] == 100


def test_the_enforced_limit_is_the_lower_one_per_field() -> None:
    from server.tenancy.tenant_settings import TenantLimits, TenantSettings

    settings = TenantSettings(
        limits=TenantLimits(requests_per_minute=10, tokens_per_day=500),
        limit_ceilings=TenantLimits(requests_per_minute=30, concurrent_jobs=2),
    )
    assert settings.effective_limits == TenantLimits(requests_per_minute=10, tokens_per_day=500, concurrent_jobs=2)
    assert TenantSettings().effective_limits == TenantLimits()  # nothing set: unlimited, as before
