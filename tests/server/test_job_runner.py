"""The job runner against real subprocesses: a small stand-in worker (written to tmp_path) that
speaks the worker protocol, crashes, hangs, ignores SIGTERM or prints garbage, as its job's
suffix says (``succeed``, ``hang-one``, ...). The real trainer is exercised end to end by the integration
tests; here every way a worker can end is forced on purpose."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from adapters.job_spec import JobSpec
from server.jobs.job_store import Job, JobStore
from server.jobs.runner import JobRunner
from server.jobs.training_files import FileStore
from server.settings import Settings
from server.tenancy.tenant_settings import RetrievalSettings
from tests.server.helpers import real_services
from tests.server.stand_in_worker import STAND_IN

WAIT_S = 60.0
"""Upper bound on waiting for a state (not a timing assertion: only a hang fails it)."""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


async def until(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


class Env(SimpleNamespace):
    settings: Settings
    jobs: JobStore
    files: FileStore
    runner: JobRunner
    file_id: str

    def submit(self, mode: str, name: str = "") -> Job:
        job = self.jobs.create(
            tenant="acme",
            model="base",
            training_file=self.file_id,
            validation_file=None,
            suffix=f"{mode}-{name}" if name else mode,
            hyperparameters={},
            seed=1,
        )
        self.runner.wake()
        return job

    async def ended(self, job: Job) -> Job:
        await until(lambda: self.jobs.get(job.id).finished, f"{job.id} to end")
        return self.jobs.get(job.id)

    async def status(self, job: Job, status: str) -> Job:
        await until(lambda: self.jobs.get(job.id).status == status, f"{job.id} to be {status}")
        return self.jobs.get(job.id)

    def messages(self, job: Job) -> list[str]:
        return [e.message for e in self.jobs.events_since(job.id, 0)]


def make_env(tmp_path: Path, **settings: object) -> Env:
    script = tmp_path / "stand_in_worker.py"
    script.write_text(STAND_IN)
    config = Settings(data=tmp_path / "data", job_grace_seconds=1.0, **settings)
    services = real_services(config, model_dir=tmp_path / "model")
    jobs, files = services.jobs, services.files
    upload = tmp_path / "upload.md"
    upload.write_text("# Handbook\n\nWe open at nine.\n")
    stored = files.add("acme", "handbook.md", "fine-tune", upload, {"ok": True, "format": "markdown", "records": 1})
    runner = JobRunner(
        jobs, files, services.store, services.tenants, config, serving=services, command=[sys.executable, str(script)]
    )
    return Env(settings=config, jobs=jobs, files=files, runner=runner, file_id=stored.id)


def run(test: Callable[[Env], Awaitable[None]], tmp_path: Path, **settings: object) -> None:
    async def main() -> None:
        env = make_env(tmp_path, **settings)
        await env.runner.start()
        try:
            await test(env)
        finally:
            await env.runner.stop()

    asyncio.run(main())


def test_a_succeeding_worker_is_recorded(tmp_path: Path) -> None:
    async def test(env: Env) -> None:
        env.runner.tenants.create_tenant("acme")
        grounded = RetrievalSettings(enabled=True)
        update = {"system_prompt": "Be Acme.", "retrieval": grounded}
        env.runner.tenants.update_settings("acme", lambda s: s.model_copy(update=update))
        job = await env.ended(env.submit("succeed"))
        assert job.status == "succeeded", job.error
        assert (job.fine_tuned_model, job.trained_tokens) == ("acme/succeed@1", 321)
        assert job.metrics == {"eval_loss_after": 0.5}
        assert (job.step, job.total_steps, job.estimated_finish) == (3, 3, None)
        messages = env.messages(job)
        assert "Step 2/3: training loss=1.0000" in messages
        assert "Evaluation after training: eval loss=0.5000, probe recall=90%" in messages
        assert "New fine-tuned model created: acme/succeed@1" in messages
        assert messages[-1] == "The job has successfully completed."
        work = env.settings.jobs_dir / job.id
        spec = json.loads((work / "spec.json").read_text())
        # the samples get the system prompt the tenant's chats get
        assert spec["job_id"] == job.id and spec["tenant"] == "acme" and spec["system_prompt"] == "Be Acme."
        assert spec["grounded"] is True  # the tenant's retrieval is on: the job trains for it
        assert Path(spec["training_files"][0]["path"]).read_text().startswith("# Handbook")
        assert spec["training_files"][0]["filename"] == "handbook.md" and spec["validation_files"] == []
        assert spec["adapters_dir"] == str(env.settings.adapters_dir.resolve())
        assert JobSpec.from_dict(spec).to_dict() == spec  # the worker reads what the runner wrote
        assert sorted(p.name for p in work.iterdir()) == ["spec.json", "worker.log"]  # scratch cleaned

    run(test, tmp_path)


def test_a_failed_event_fails_the_job_with_the_workers_code(tmp_path: Path) -> None:
    async def test(env: Env) -> None:
        job = await env.ended(env.submit("fail"))
        assert job.status == "failed"
        assert (job.error.code, job.error.message) == ("invalid_training_file", "handbook.md: no text")
        assert job.fine_tuned_model is None

    run(test, tmp_path)


@pytest.mark.parametrize("mode", ["crash", "silent"])  # suffixes are adapter names: no "_"
def test_a_worker_that_ends_without_a_result_is_a_crash(tmp_path: Path, mode: str) -> None:
    async def test(env: Env) -> None:
        job = await env.ended(env.submit(mode))
        assert job.status == "failed" and job.error.code == "trainer_crashed"
        if mode == "crash":
            assert "exited with status 3" in job.error.message
            # the worker's stderr is the operator's (kept in the job's worker.log), never the tenant's
            assert "boom" not in job.error.message
            assert "boom in the trainer" in (env.settings.jobs_dir / job.id / "worker.log").read_text()

    run(test, tmp_path)


def test_a_child_left_behind_does_not_keep_the_job_running(tmp_path: Path) -> None:
    async def test(env: Env) -> None:
        job = await env.ended(env.submit("orphan"))
        assert job.status == "succeeded" and job.fine_tuned_model == "acme/orphan@1"
        child_pid = int((env.settings.jobs_dir / f"{job.id}.child").read_text())
        await until(lambda: not alive(child_pid), "the leftover child to be killed")

    run(test, tmp_path)


def test_garbage_on_stdout_is_skipped(tmp_path: Path) -> None:
    async def test(env: Env) -> None:
        job = await env.ended(env.submit("garbage"))
        assert job.status == "succeeded" and job.fine_tuned_model == "acme/x@1"
        assert job.trained_tokens is None and job.metrics is None  # mistyped fields dropped

    run(test, tmp_path)


@pytest.mark.parametrize("mode", ["hang", "stubborn"])
def test_cancel_kills_the_whole_process_group(tmp_path: Path, mode: str) -> None:
    """``hang`` dies of SIGTERM; ``stubborn`` ignores it and gets SIGKILL after the grace period."""

    async def test(env: Env) -> None:
        job = env.submit(mode)
        child_pid_file = env.settings.jobs_dir / job.id / "child.pid"
        await until(child_pid_file.exists, "the worker's child")
        running = env.jobs.get(job.id)
        child_pid = int(child_pid_file.read_text())
        assert running.status == "running" and alive(running.pid) and alive(child_pid)
        cancelled = await env.runner.cancel(job.id)
        assert cancelled.status == "cancelled" and cancelled.error is None and cancelled.fine_tuned_model is None
        await until(lambda: not alive(child_pid) and not alive(running.pid), "the worker and its child to die")
        assert env.messages(job)[-1] == "Fine-tuning job cancelled."

    run(test, tmp_path)


def test_jobs_queue_behind_the_running_one_and_queued_jobs_cancel_at_once(tmp_path: Path) -> None:
    async def test(env: Env) -> None:
        first, second, third = env.submit("hang", "one"), env.submit("succeed", "two"), env.submit("succeed", "three")
        await env.status(first, "running")
        await env.status(third, "queued")
        assert env.jobs.get(second.id).status == "queued"
        assert (await env.runner.cancel(third.id)).status == "cancelled"
        assert env.jobs.get(second.id).status == "queued"  # still waiting: one job at a time
        await env.runner.cancel(first.id)
        assert (await env.ended(second)).status == "succeeded"
        assert env.jobs.get(third.id).status == "cancelled"

    run(test, tmp_path)


def test_a_job_that_makes_no_valid_spec_fails_before_a_worker_starts(tmp_path: Path) -> None:
    async def test(env: Env) -> None:
        job = await env.ended(env.submit("succeed_underscored"))  # only the store, not the route, lets it in
        assert job.status == "failed" and job.error.code == "invalid_spec" and "adapter name" in job.error.message
        assert job.pid is None and not (env.settings.jobs_dir / job.id / "spec.json").exists()

    run(test, tmp_path)


def test_a_deleted_training_file_fails_the_job_before_it_starts(tmp_path: Path) -> None:
    async def test(env: Env) -> None:
        env.files.delete(env.file_id, "acme")
        job = await env.ended(env.submit("succeed"))
        assert job.status == "failed" and job.error.code == "file_not_found" and job.error.param == "training_file"

    run(test, tmp_path)


def test_start_fails_jobs_left_running_and_kills_their_leftover_worker(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    stale = env.jobs.create(
        tenant="acme",
        model="base",
        training_file=env.file_id,
        validation_file=None,
        suffix="hang-old",
        hyperparameters={},
        seed=1,
    )
    env.jobs.transition(stale.id, "queued", "q")
    # A worker of the previous server that is still alive: its command line names the job.
    leftover = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", stale.id], start_new_session=True
    )
    env.jobs.transition(stale.id, "running", "started", pid=leftover.pid)
    stale_work = env.settings.jobs_dir / stale.id
    (stale_work / "checkpoint-1").mkdir(parents=True)
    (stale_work / "worker.log").write_text("training...\n")
    waiting = env.jobs.create(
        tenant="acme",
        model="base",
        training_file=env.file_id,
        validation_file=None,
        suffix="succeed-new",
        hyperparameters={},
        seed=1,
    )
    env.jobs.transition(waiting.id, "queued", "q")

    async def main() -> None:
        await env.runner.start()
        try:
            failed = env.jobs.get(stale.id)
            assert failed.status == "failed" and failed.error.code == "server_restarted"
            assert "Create the job again" in failed.error.message
            assert leftover.wait(timeout=WAIT_S) == -signal.SIGKILL
            assert [p.name for p in stale_work.iterdir()] == ["worker.log"]  # its checkpoints are gone
            assert (await env.ended(waiting)).status == "succeeded"
        finally:
            await env.runner.stop()

    asyncio.run(main())


def test_stop_ends_running_workers_and_fails_their_jobs(tmp_path: Path) -> None:
    env = make_env(tmp_path)

    async def main() -> Job:
        await env.runner.start()
        job = env.submit("hang")
        await env.status(job, "running")
        await until(lambda: env.jobs.get(job.id).pid is not None, "the pid")
        await env.runner.stop()
        return env.jobs.get(job.id)

    job = asyncio.run(main())
    assert job.status == "failed" and job.error.code == "server_restarted"
    assert not alive(job.pid)


def test_a_child_dies_with_its_parent_even_on_sigkill(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a worker never outlives a server killed with SIGKILL."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    parent_code = (
        "import subprocess, sys, time\n"
        "from server.jobs.child_process import child_setup\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], preexec_fn=child_setup(),"
        " start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2]
    )
    child_pid = int(parent.stdout.readline())
    assert alive(child_pid)
    parent.kill()
    parent.wait(timeout=WAIT_S)
    asyncio.run(until(lambda: not alive(child_pid), "the orphaned child to die"))
