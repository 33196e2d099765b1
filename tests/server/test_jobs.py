"""The job store on a real SQLite file (the state machine, events and their paging, tenant
scoping, state that survives reopening the database) and ``/v1/fine_tuning/jobs`` through
Starlette with the real ``trainer.check`` and a runner driving a stand-in worker."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from adapters.hyperparameters import normalise
from server.jobs.file_check import FileChecker
from server.jobs.job_store import JobFailure, JobStore
from tests.server.helpers import ADMIN, assert_error, create, wait_ended


def new_job(store: JobStore, tenant: str = "acme", **overrides):
    fields = dict(
        tenant=tenant,
        model="base",
        training_file="file-1",
        validation_file=None,
        suffix="handbook",
        hyperparameters={"n_epochs": 1},
        seed=7,
    )
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
    done = store.transition(
        job.id, "succeeded", "done", fine_tuned_model="acme/handbook@1", trained_tokens=99, metrics={"eval_loss": 0.5}
    )
    assert done.status == "succeeded" and done.finished and done.finished_at is not None
    assert (done.fine_tuned_model, done.trained_tokens, done.metrics) == ("acme/handbook@1", 99, {"eval_loss": 0.5})


def test_racing_state_changes_take_effect_once_and_never_fail(store: JobStore) -> None:
    """Cancel and start arriving together (two threads, as the runner's helpers and a route are):
    each job ends in exactly one of the two states, and neither side gets a database error."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [new_job(store).id for _ in range(12)]
    for job_id in jobs:
        store.transition(job_id, "queued", "queued")
    moves = [(job_id, status) for job_id in jobs for status in ("running", "cancelled", "running", "cancelled")]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda move: store.transition(move[0], move[1], move[1]), moves))
    for job_id in jobs:
        won = sorted(status for (moved, status), job in zip(moves, outcomes) if moved == job_id and job is not None)
        final = store.get(job_id)
        assert final is not None and final.status in ("running", "cancelled")
        # each move took effect at most once; a cancel may follow a start, never the other way round
        assert won in (["running"], ["cancelled"], ["cancelled", "running"]), won
        assert final.status == ("running" if won == ["running"] else "cancelled")


@pytest.mark.parametrize(
    "path",
    [
        ["succeeded"],  # cannot skip queued and running
        ["running"],  # cannot run before it is queued
        ["queued", "succeeded"],  # cannot succeed without running
        ["queued", "running", "queued"],  # never backwards
        ["cancelled", "queued"],  # an ended job stays ended
        ["queued", "running", "failed", "cancelled"],
    ],
)
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
            error = JobFailure("x", "why", "training_file") if end == "failed" else None
            ended = store.transition(job.id, end, end, error=error)
            assert ended is not None and ended.status == end and ended.error == error


def test_a_failure_records_its_error_and_an_error_event(store: JobStore) -> None:
    job = new_job(store)
    store.transition(job.id, "failed", "Fine-tuning job failed: bad file", error=JobFailure("invalid_file", "bad file"))
    failed = store.get(job.id)
    assert failed.error == JobFailure("invalid_file", "bad file", None)
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


# ------------------------------------------------------------------------------- routes


def test_a_job_is_created_run_and_reported_like_openai(api: SimpleNamespace) -> None:
    response = create(api, hyperparameters={"n_epochs": 2}, seed=5)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["object"] == "fine_tuning.job" and job["id"].startswith("ftjob-") and job["status"] == "validating_files"
    assert job["suffix"] == "handbook-v2"  # derived from "Handbook v2.md": the stand-in then fails it
    assert job["hyperparameters"]["n_epochs"] == 2 and job["hyperparameters"]["lora_rank"] == 16  # normalised
    assert (job["seed"], job["organization_id"], job["error"], job["result_files"]) == (5, "acme", None, [])
    done = wait_ended(api, create(api, suffix="succeed").json()["id"])
    assert done["status"] == "succeeded" and done["fine_tuned_model"] == "acme/succeed@1"
    assert done["progress"] == {"step": 3, "total_steps": 3} and done["metrics"] == {"eval_loss_after": 0.5}
    assert done["trained_tokens"] == 321 and done["finished_at"] >= done["created_at"]
    events = api.client.get(f"/v1/fine_tuning/jobs/{done['id']}/events?limit=2", headers=api.acme).json()
    assert [e["message"] for e in events["data"]] == [
        "The job has successfully completed.",
        "New fine-tuned model created: acme/succeed@1",
    ]
    assert events["has_more"] and events["data"][0]["object"] == "fine_tuning.job.event"
    older = api.client.get(
        f"/v1/fine_tuning/jobs/{done['id']}/events?after={events['last_id']}&limit=100", headers=api.acme
    ).json()
    assert older["data"][-1]["message"].startswith("Created fine-tuning job") and not older["has_more"]
    metrics = [e for e in older["data"] if e["type"] == "metrics"]
    assert metrics and metrics[-1]["data"]["step"] in (1, 2, 3)
    with api.client.stream("GET", f"/v1/fine_tuning/jobs/{done['id']}/events?stream=true", headers=api.acme) as live:
        lines = [line[len("data: ") :] for line in live.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    streamed = [json.loads(line)["message"] for line in lines[:-1]]
    assert streamed == [e["message"] for e in reversed(events["data"] + older["data"])]
    listed = api.client.get("/v1/fine_tuning/jobs?limit=1", headers=api.acme).json()
    assert [j["id"] for j in listed["data"]] == [done["id"]] and listed["has_more"]
    rest = api.client.get(f"/v1/fine_tuning/jobs?after={done['id']}&limit=100", headers=api.acme).json()
    assert job["id"] in [j["id"] for j in rest["data"]] and done["id"] not in [j["id"] for j in rest["data"]]


def test_cancel_over_http(api: SimpleNamespace) -> None:
    job = create(api, suffix="hang").json()
    deadline = time.monotonic() + 60
    while api.client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=api.acme).json()["status"] != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    assert_error(api.client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=api.globex), 404, "job_not_found")
    cancelled = api.client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=api.acme)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert_error(api.client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=api.acme), 409)


def test_hyperparameters_are_checked_in_process(api: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """No checker process for them (only uploaded files need one): the route answers without one."""

    async def no_checker(*args: object, **kwargs: object) -> None:
        raise AssertionError("a checker process was started for hyperparameters")

    monkeypatch.setattr(FileChecker, "_check", no_checker)
    bad = assert_error(create(api, hyperparameters={"warp_speed": 9}), 400, "invalid_hyperparameters")
    assert bad["param"] == "hyperparameters.warp_speed" and "Unknown hyperparameter 'warp_speed'" in bad["message"]
    job = create(api, suffix="fail-inprocess", hyperparameters={"n_epochs": 2.0, "target_modules": ["q_proj"]})
    assert job.status_code == 200, job.text
    assert job.json()["hyperparameters"] == {**normalise({}), "n_epochs": 2, "target_modules": ["q_proj"]}


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "acme/nothing"}, 404, "model_not_found", "model"),
        ({"model": "globex/private"}, 404, "model_not_found", "model"),
        ({"model": "not a model"}, 404, "model_not_found", "model"),
        ({"model": None}, 400, None, "model"),
        ({"training_file": "file-000000000000000000000000"}, 404, "file_not_found", "training_file"),
        ({"training_file": None}, 400, None, "training_file"),
        ({"validation_file": "file-000000000000000000000000"}, 404, "file_not_found", "validation_file"),
        ({"hyperparameters": {"n_epochs": 0}}, 400, "invalid_hyperparameters", "hyperparameters.n_epochs"),
        ({"hyperparameters": {"colour": "blue"}}, 400, "invalid_hyperparameters", "hyperparameters.colour"),
        # the trainer accepts these; the operator's ceilings (SWAPLORA_MAX_JOB_EPOCHS / _SECONDS) do not
        ({"hyperparameters": {"n_epochs": 51}}, 400, "invalid_hyperparameters", "hyperparameters.n_epochs"),
        (
            {"hyperparameters": {"max_seconds": 4 * 3600 + 1}},
            400,
            "invalid_hyperparameters",
            "hyperparameters.max_seconds",
        ),
        ({"hyperparameters": [1]}, 400, None, "hyperparameters"),
        ({"suffix": "Not A Slug!"}, 400, "invalid_suffix", "suffix"),
        ({"seed": -1}, 400, None, "seed"),
        ({"seed": True}, 400, None, "seed"),
        ({"colour": "blue"}, 400, None, "colour"),
        ({"tenant": "globex"}, 404, None, "tenant"),
    ],
)
def test_bad_job_requests_are_4xx_and_create_nothing(
    api: SimpleNamespace, body: dict, status: int, code: str | None, param: str
) -> None:
    before = [j.id for j in api.services.jobs.list_jobs(None, limit=1000)[0]]
    error = assert_error(create(api, **body), status, code)
    assert error["param"] == param
    assert [j.id for j in api.services.jobs.list_jobs(None, limit=1000)[0]] == before


def test_another_tenants_file_and_job_look_missing(api: SimpleNamespace) -> None:
    foreign = assert_error(create(api, training_file=api.file["globex"]), 404, "file_not_found")
    missing = assert_error(create(api, training_file="file-x"), 404, "file_not_found")
    assert foreign["message"].replace(api.file["globex"], "ID") == missing["message"].replace("file-x", "ID")
    job = create(api, model="acme/support", headers=api.acme).json()
    assert job["suffix"] == "support" and job["model"] == "acme/support"
    for path in ("", "/events"):
        assert_error(
            api.client.get(f"/v1/fine_tuning/jobs/{job['id']}{path}", headers=api.globex), 404, "job_not_found"
        )
    assert job["id"] not in [j["id"] for j in api.client.get("/v1/fine_tuning/jobs", headers=api.globex).json()["data"]]
    assert_error(create(api, headers=ADMIN), 400)  # the admin must name the tenant
    for_globex = create(api, headers=ADMIN, tenant="globex", training_file=api.file["globex"]).json()
    assert for_globex["organization_id"] == "globex"
