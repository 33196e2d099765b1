"""The job store on a real SQLite file: the state machine, events and their paging, tenant
scoping, and state that survives reopening the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.jobs import JobError, JobStore


def new_job(store: JobStore, tenant: str = "acme", **overrides):
    fields = dict(tenant=tenant, model="base", training_file="file-1", validation_file=None, suffix="handbook",
                  hyperparameters={"n_epochs": 1}, seed=7)
    return store.create(**{**fields, **overrides})


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "swaplora.db")


def test_a_job_walks_the_happy_path(store: JobStore) -> None:
    job = new_job(store)
    assert job.id.startswith("ftjob-") and job.status == "validating_files"
    assert job.hyperparameters == {"n_epochs": 1} and job.seed == 7 and job.error is None
    assert store.transition(job.id, "queued", "queued").status == "queued"
    running = store.transition(job.id, "running", "started", pid=1234)
    assert running.status == "running" and running.started_at is not None and running.pid == 1234
    done = store.transition(job.id, "succeeded", "done", fine_tuned_model="acme/handbook@1", trained_tokens=99,
                            metrics={"eval_loss": 0.5})
    assert done.status == "succeeded" and done.finished and done.finished_at is not None
    assert (done.fine_tuned_model, done.trained_tokens, done.metrics) == ("acme/handbook@1", 99, {"eval_loss": 0.5})


@pytest.mark.parametrize("path", [
    ["succeeded"],                       # cannot skip queued and running
    ["running"],                         # cannot run before it is queued
    ["queued", "succeeded"],             # cannot succeed without running
    ["queued", "running", "queued"],     # never backwards
    ["cancelled", "queued"],             # an ended job stays ended
    ["queued", "running", "failed", "cancelled"],
])
def test_moves_outside_the_state_machine_change_nothing(store: JobStore, path: list[str]) -> None:
    job = new_job(store)
    *allowed, refused = path
    for status in allowed:
        assert store.transition(job.id, status, status) is not None, status
    before = store.get(job.id)
    events_before = store.events(job.id, limit=100)[0]
    assert store.transition(job.id, refused, "nope") is None
    assert store.get(job.id) == before
    assert store.events(job.id, limit=100)[0] == events_before


def test_any_live_state_can_fail_or_be_cancelled(store: JobStore) -> None:
    for prefix in ([], ["queued"], ["queued", "running"]):
        for end in ("failed", "cancelled"):
            job = new_job(store)
            for status in prefix:
                store.transition(job.id, status, status)
            error = JobError("x", "why", "training_file") if end == "failed" else None
            ended = store.transition(job.id, end, end, error=error)
            assert ended is not None and ended.status == end and ended.error == error


def test_a_failure_records_its_error_and_an_error_event(store: JobStore) -> None:
    job = new_job(store)
    store.transition(job.id, "failed", "Fine-tuning job failed: bad file", error=JobError("invalid_file", "bad file"))
    failed = store.get(job.id)
    assert failed.error == JobError("invalid_file", "bad file", None)
    newest = store.events(job.id, limit=1)[0][0]
    assert newest.level == "error" and "bad file" in newest.message


def test_events_page_newest_first_and_stream_oldest_first(store: JobStore) -> None:
    job = new_job(store)
    for step in range(1, 6):
        store.add_event(job.id, f"step {step}", type="metrics", data={"step": step})
    page, more = store.events(job.id, limit=2)
    assert [e.message for e in page] == ["step 5", "step 4"] and more
    page2, more2 = store.events(job.id, after=page[-1].id, limit=10)
    assert [e.message for e in page2] == ["step 3", "step 2", "step 1", f"Created fine-tuning job: {job.id}"]
    assert not more2
    assert page2[0].data == {"step": 3} and page2[0].type == "metrics"
    streamed = store.events_since(job.id, 0)
    assert [e.message for e in streamed] == [e.message for e in reversed(page + page2)]
    assert store.events_since(job.id, streamed[-1].seq) == []
    assert store.events(job.id, after="ftevent-unknown")[0] == []


def test_jobs_are_scoped_to_their_tenant(store: JobStore) -> None:
    mine = new_job(store, "acme")
    theirs = new_job(store, "globex")
    assert store.get(mine.id, "acme") is not None
    assert store.get(theirs.id, "acme") is None
    assert store.get(theirs.id) is not None  # the admin's view
    assert [j.id for j in store.list_jobs("acme")[0]] == [mine.id]
    assert {j.id for j in store.list_jobs(None)[0]} == {mine.id, theirs.id}


def test_job_list_pages_newest_first(store: JobStore) -> None:
    ids = [new_job(store).id for _ in range(5)]
    page, more = store.list_jobs("acme", limit=3)
    assert [j.id for j in page] == ids[::-1][:3] and more
    rest, more = store.list_jobs("acme", after=page[-1].id, limit=3)
    assert [j.id for j in rest] == ids[::-1][3:] and not more


def test_state_survives_reopening(tmp_path: Path) -> None:
    first = JobStore(tmp_path / "db.sqlite")
    job = new_job(first)
    first.transition(job.id, "queued", "queued")
    first.transition(job.id, "running", "started", pid=42)
    first.update(job.id, step=3, total_steps=10, estimated_finish=123)
    again = JobStore(tmp_path / "db.sqlite")
    reopened = again.get(job.id)
    assert (reopened.status, reopened.pid, reopened.step, reopened.total_steps) == ("running", 42, 3, 10)
    assert [j.id for j in again.with_status("running")] == [job.id]


def test_only_known_columns_can_be_set(store: JobStore) -> None:
    job = new_job(store)
    with pytest.raises(ValueError):
        store.update(job.id, status="succeeded")
    with pytest.raises(ValueError):
        store.transition(job.id, "queued", "x", tenant="globex")
    assert store.get(job.id).status == "validating_files"
