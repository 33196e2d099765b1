"""``limits.concurrent_jobs`` at ``POST /v1/fine_tuning/jobs``: a tenant over its limit gets 429
with Retry-After, other tenants are not affected, and a finished (here: cancelled) job frees
its place. Uses the job route fixture of test_jobs (real stores, stand-in worker)."""

from __future__ import annotations

from types import SimpleNamespace

from server.tenancy.tenant_settings import TenantSettings
from tests.server.helpers import assert_error, create, wait_ended


def _limit(api: SimpleNamespace, tenant: str, jobs: int | None) -> None:
    def change(current: TenantSettings) -> TenantSettings:
        return current.model_copy(update={"limits": current.limits.model_copy(update={"concurrent_jobs": jobs})})

    api.services.tenants.update_settings(tenant, change)


def test_concurrent_jobs_limit(api: SimpleNamespace) -> None:
    _limit(api, "acme", 1)
    try:
        first = create(api, suffix="hang-limit")
        assert first.status_code == 200, first.text
        refused = create(api, suffix="succeed-limit")
        error = assert_error(refused, 429, "rate_limit_exceeded")
        assert "concurrent" in error["message"] or "at once" in error["message"]
        assert int(refused.headers["retry-after"]) >= 1
        other = create(api, headers=api.globex, training_file=api.file["globex"], suffix="succeed-other")
        assert other.status_code == 200, other.text
        cancelled = api.client.post(f"/v1/fine_tuning/jobs/{first.json()['id']}/cancel", headers=api.acme)
        assert cancelled.status_code == 200, cancelled.text
        assert wait_ended(api, first.json()["id"])["status"] == "cancelled"
        again = create(api, suffix="succeed-limit")
        assert again.status_code == 200, again.text
        wait_ended(api, again.json()["id"])
    finally:
        _limit(api, "acme", None)
