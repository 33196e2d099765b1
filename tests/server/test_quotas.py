"""Per-tenant disk quotas and retention, through the real routes on real stores (no model): a
tenant over a quota gets 413/429 ``quota_exceeded`` with nothing stored, sees its usage in
``GET /v1/tenants/{id}``, frees room by deleting; only the operator sets the quotas; retention
deletes old job logs and unused old files, never a file an unfinished job needs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.errors import install_error_handlers
from server.jobs import retention
from server.jobs.job_store import Job
from server.routes import comparisons, files, fine_tuning, tenants
from server.settings import Settings
from server.tenancy import quotas
from tests.adapters.helpers import publish
from tests.server.helpers import ADMIN, ADMIN_KEY, assert_error, bearer, real_services

DOC = b"# Opening hours\n\nWe open Tuesday to Saturday, 9:30 to 18:00.\n"


@pytest.fixture
def env(tmp_path: Any) -> Iterator[SimpleNamespace]:
    settings = Settings(data=tmp_path / "data", admin_key=ADMIN_KEY, default_limit_ceilings={})
    services = real_services(settings)
    app = Starlette(routes=[*tenants.routes, *files.routes, *comparisons.routes, *fine_tuning.routes])
    install_error_handlers(app)
    app.state.services = services
    with TestClient(app) as client:
        key = client.post("/v1/tenants", json={"id": "acme"}, headers=ADMIN).json()["api_key"]
        yield SimpleNamespace(client=client, services=services, settings=settings, acme=bearer(key))


def set_quotas(env: SimpleNamespace, **ceilings: int) -> None:
    response = env.client.patch("/v1/tenants/acme", json={"limit_ceilings": ceilings}, headers=ADMIN)
    assert response.status_code == 200, response.text


def upload(env: SimpleNamespace, content: bytes = DOC, name: str = "hours.md") -> Any:
    return env.client.post(
        "/v1/files", headers=env.acme, data={"purpose": "fine-tune"}, files={"file": (name, content, "text/markdown")}
    )


def usage(env: SimpleNamespace) -> dict[str, int]:
    return env.client.get("/v1/tenants/acme", headers=env.acme).json()["usage"]


def stored(env: SimpleNamespace) -> list[str]:
    roots = [env.settings.files_dir, env.settings.data / "tmp"]
    return sorted(str(p) for root in roots if root.exists() for p in root.rglob("*"))


def test_new_tenants_get_the_servers_quotas(tmp_path: Any) -> None:
    ceilings = Settings(data=tmp_path).default_limit_ceilings
    assert ceilings.storage_bytes == 10 << 30 and ceilings.adapters == 100 and ceilings.files == 1000


def test_usage_counts_what_the_tenant_stores(env: SimpleNamespace) -> None:
    assert usage(env) == {"storage_bytes": 0, "adapters": 0, "adapter_versions": 0, "files": 0, "comparisons": 0}
    assert upload(env).status_code == 200
    for _ in range(2):
        publish(env.services.store, "acme", "support")
    publish(env.services.store, "acme", "sales")
    publish(env.services.store, "globex", "private")  # another tenant's: not counted
    adapter_bytes = quotas.tree_bytes(env.settings.adapters_dir / "acme")
    index_bytes = quotas.tree_bytes(env.settings.knowledge_dir / "acme")
    index_bytes += quotas.tree_bytes(env.settings.knowledge_vectors_dir / "acme")
    assert index_bytes > 0  # the file's passages, indexed for retrieval, are the tenant's bytes too
    assert usage(env) == {
        "storage_bytes": len(DOC) + adapter_bytes + index_bytes,
        "adapters": 2,
        "adapter_versions": 3,
        "files": 1,
        "comparisons": 0,
    }


def test_deleting_a_file_frees_its_bytes_and_its_index(env: SimpleNamespace) -> None:
    uploaded = upload(env).json()["id"]
    assert usage(env)["storage_bytes"] > len(DOC)
    assert env.client.delete(f"/v1/files/{uploaded}", headers=env.acme).status_code == 200
    assert usage(env)["storage_bytes"] == 0


def test_a_file_past_the_count_quota_is_429_and_deleting_frees_room(env: SimpleNamespace) -> None:
    set_quotas(env, files=1)
    first = upload(env)
    assert first.status_code == 200
    before = stored(env)
    error = assert_error(upload(env), 429, "quota_exceeded")
    assert "1 of its 1 training files" in error["message"] and stored(env) == before
    assert env.client.delete(f"/v1/files/{first.json()['id']}", headers=env.acme).status_code == 200
    assert upload(env).status_code == 200


def test_a_file_past_the_storage_quota_is_413_with_nothing_stored(env: SimpleNamespace) -> None:
    set_quotas(env, storage_bytes=len(DOC) + 10)
    assert upload(env).status_code == 200
    before = stored(env)
    error = assert_error(upload(env), 413, "quota_exceeded")
    assert "storage quota" in error["message"] and stored(env) == before
    assert usage(env)["files"] == 1


def test_votes_and_jobs_respect_their_quotas(env: SimpleNamespace) -> None:
    publish(env.services.store, "acme", "support")
    vote = {"left_model": "base", "right_model": "acme/support", "prompt": "Hi", "vote": "left"}
    set_quotas(env, comparisons=1)
    assert env.client.post("/v1/comparisons", json=vote, headers=env.acme).status_code == 201
    assert_error(env.client.post("/v1/comparisons", json=vote, headers=env.acme), 429, "quota_exceeded")
    set_quotas(env, adapter_versions=1)  # the job would publish acme/support@2
    training = upload(env).json()["id"]
    job = {"model": "base", "training_file": training, "suffix": "support"}
    error = assert_error(env.client.post("/v1/fine_tuning/jobs", json=job, headers=env.acme), 429, "quota_exceeded")
    assert "adapter versions" in error["message"]
    assert env.services.jobs.ids_of("acme") == []


def test_only_the_operator_sets_quotas(env: SimpleNamespace) -> None:
    set_quotas(env, files=5)
    assert_error(env.client.patch("/v1/tenants/acme", json={"limit_ceilings": {"files": 50}}, headers=env.acme), 403)
    assert_error(env.client.patch("/v1/tenants/acme", json={"limits": {"files": 50}}, headers=env.acme), 400)
    lowered = env.client.patch("/v1/tenants/acme", json={"limits": {"files": 2}}, headers=env.acme)
    assert lowered.json()["effective_limits"]["files"] == 2


def unfinished_job(env: SimpleNamespace, training: str, suffix: str = "next") -> Job:
    """A job of acme training on ``training``, left in ``validating_files``."""
    return env.services.jobs.create(
        tenant="acme",
        model="base",
        training_file=training,
        validation_file=None,
        suffix=suffix,
        hyperparameters={},
        seed=1,
    )


def finished_job(env: SimpleNamespace, training: str) -> str:
    jobs = env.services.jobs
    job = unfinished_job(env, training, suffix="support")
    jobs.transition(job.id, "failed", "stopped for the test")
    (env.settings.jobs_dir / job.id).mkdir(parents=True)
    (env.settings.jobs_dir / job.id / "worker.log").write_text("step 1\n")
    return job.id


def test_retention_deletes_old_logs_and_unused_old_files(env: SimpleNamespace) -> None:
    services = env.services
    kept, unused = upload(env).json()["id"], upload(env, name="old.md").json()["id"]
    done = finished_job(env, kept)
    unfinished_job(env, kept)  # its file must stay
    later = time.time() + 40 * retention.DAY_S
    services.settings = env.settings.model_copy(update={"job_log_retention_days": None})
    assert services.settings.file_retention_days is None  # the default: files stay until deleted

    def sweep(now: float) -> retention.Swept:
        return retention.sweep_expired(services.jobs, services.files, services.settings, now=now)

    assert sweep(later) == retention.Swept(job_logs=0, files=0)  # nothing set
    services.settings = env.settings.model_copy(update={"job_log_retention_days": 30.0, "file_retention_days": 30.0})
    assert sweep(time.time()) == retention.Swept(0, 0)  # nothing old yet
    assert sweep(later) == retention.Swept(job_logs=1, files=1)
    assert services.files.get(kept, "acme") is not None and services.files.get(unused, "acme") is None
    events, _ = services.jobs.events(done)
    assert [e.message for e in events] == ["Older events were deleted (log retention)."]
    assert not (env.settings.jobs_dir / done).exists() and services.jobs.get(done) is not None
    assert sweep(later) == retention.Swept(0, 0)  # once


def test_a_finished_job_can_be_deleted_with_its_log(env: SimpleNamespace) -> None:
    training = upload(env).json()["id"]
    done = finished_job(env, training)
    running = unfinished_job(env, training)
    assert_error(env.client.delete(f"/v1/fine_tuning/jobs/{running.id}", headers=env.acme), 409, "job_not_ended")
    other = env.client.post("/v1/tenants", json={"id": "globex"}, headers=ADMIN).json()["api_key"]
    assert_error(env.client.delete(f"/v1/fine_tuning/jobs/{done}", headers=bearer(other)), 404)
    deleted = env.client.delete(f"/v1/fine_tuning/jobs/{done}", headers=env.acme)
    assert deleted.json() == {"id": done, "object": "fine_tuning.job.deleted", "deleted": True}
    assert not (env.settings.jobs_dir / done).exists() and env.services.jobs.get(done) is None
    assert_error(env.client.get(f"/v1/fine_tuning/jobs/{done}", headers=env.acme), 404)
