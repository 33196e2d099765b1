"""Runs fine-tuning jobs: one ``python -m trainer.worker SPEC.json`` process per job, started by
a :class:`~server.jobs.worker_handle.WorkerLauncher` (a child process here by default; a Ray task
in a cluster).

Contract:

- :meth:`JobRunner.start` (in the app's lifespan) first fails every job a previous server left
  ``running`` with code ``server_restarted`` (killing its leftover process group if it still
  runs), then keeps scheduling: ``validating_files`` jobs whose files exist move to ``queued``;
  queued jobs start round-robin across tenants, oldest first within one (:mod:`server.jobs.order`),
  at most ``settings.max_concurrent_jobs`` at a time, once the
  base model's directory is known. A start is a call to :meth:`wake` away; a timer retries too.
- A worker runs in its own process group with ``PR_SET_PDEATHSIG`` (it dies with the server).
  Its stdout is read as JSON-lines events (:func:`adapters.worker_events.parse_event`) into the
  job store; lines that are not events are logged and skipped; stderr goes to ``<data>/jobs/<id>/worker.log``.
  The job ends ``succeeded`` after a ``succeeded`` event, ``failed`` with the worker's code after
  a ``failed`` event, and ``failed`` with ``trainer_crashed`` when the process ends any other way.
- :meth:`cancel` cancels a job that has not started at once; a running one gets SIGTERM on its
  process group, SIGKILL after ``settings.job_grace_seconds``, and ends ``cancelled`` (the worker
  publishes atomically, so nothing half-written is left). :meth:`stop` ends every running job
  the same way and fails it with ``server_restarted``; it runs at the start of a SIGTERM drain
  (:mod:`server.drain`) and again in the lifespan's shutdown (a second call only waits).
- The error codes a job ends ``failed`` with here are stable (clients may branch on them):
  ``server_restarted`` (:data:`RESTARTED`: the server stopped, by SIGTERM or a crash, while the
  job ran; nothing was published; create the job again), ``trainer_crashed`` (the worker died
  without reporting a result, e.g. killed by SIGKILL or out of memory), ``file_not_found`` (a
  training or validation file was deleted before the start), ``invalid_spec`` (the job makes no
  valid :class:`~adapters.job_spec.JobSpec`), or the worker's own code from its ``failed`` event
  (docs/training-jobs.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from adapters.job_spec import InvalidJobSpec
from adapters.store import AdapterStore
from adapters.worker_events import FailedEvent, Outcome, ProgressEvent, SucceededEvent, WorkerEvent, parse_event
from server.cpu_share import CPUShare
from server.jobs.child_process import kill_group, trainer_command, trainer_env
from server.jobs.events import describe_event, progress_fields
from server.jobs.job_store import Job, JobFailure, JobStore
from server.jobs.order import fair_order
from server.jobs.training_files import FileStore
from server.jobs.worker_handle import LocalLauncher, WorkerHandle, WorkerLauncher
from server.jobs.worker_process import clean_work_dir, crash_message, is_worker_of
from server.jobs.worker_spec import worker_spec
from server.settings import Settings
from server.tenancy.tenants import TenantRegistry

log = logging.getLogger(__name__)
_RETRY_S = 2.0
_DRAIN_S = 5.0
"""Time to read the rest of a worker's stdout once it has exited."""
_CANCELLED = "Fine-tuning job cancelled."
RESTARTED = JobFailure(
    "server_restarted",
    "The server stopped while this job was running; the partial training "
    "was discarded and nothing was published. Create the job again.",
)


class ServingSide(Protocol):
    """What the runner reads of the serving side, which loads after the runner has started
    (:class:`server.services.Services` is one)."""

    @property
    def model_dir(self) -> Path | None: ...

    @property
    def plan_name(self) -> str | None: ...

    def set_engine_threads(self, threads: int) -> None: ...


@dataclass
class _Worker:
    job_id: str
    tenant: str
    handle: WorkerHandle
    outcome: Outcome | None = None
    """The worker's ``succeeded`` or ``failed`` event, once seen."""
    stop_reason: str | None = None
    """``cancel`` or ``shutdown`` once the server asked the worker to stop."""
    done: asyncio.Event = field(default_factory=asyncio.Event)


class JobRunner:
    """Schedules and supervises training workers; lives on the server's event loop."""

    def __init__(
        self,
        jobs: JobStore,
        files: FileStore,
        store: AdapterStore,
        tenants: TenantRegistry,
        settings: Settings,
        serving: ServingSide,
        *,
        command: Sequence[str] | None = None,
        launcher: WorkerLauncher | None = None,
    ) -> None:
        self.jobs = jobs
        self.files = files
        self.store = store
        self.tenants = tenants
        self.settings = settings
        self.serving = serving
        self.command = list(command) if command is not None else trainer_command("trainer.worker")
        self.launcher: WorkerLauncher = launcher or LocalLauncher()
        """Where workers run: child processes here, or Ray tasks (:mod:`server.cluster.training`)."""
        self.cpu = CPUShare.for_this_machine(self.settings.torch_threads)
        """How the cores are split between the engine and the workers."""
        self._workers: dict[str, _Worker] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()
        """Supervisors and SIGKILL timers; held here because the loop keeps only weak references."""

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await asyncio.to_thread(self._recover)
        self._task = asyncio.create_task(self._loop(), name="swaplora-job-runner")

    async def stop(self) -> None:
        # A flag, not Task.cancel(): Python 3.11's wait_for can swallow a cancellation.
        self._stopping = True
        self.wake()
        if self._task is not None:
            await self._task
        workers = list(self._workers.values())
        for worker in workers:
            self._signal(worker, "shutdown")
        if workers:
            await asyncio.gather(*(w.done.wait() for w in workers))

    def wake(self) -> None:
        """Look for work now (a job was created, a worker ended)."""
        self._wake.set()

    def _recover(self) -> None:
        for job in self.jobs.with_status("running"):
            if job.pid is not None and is_worker_of(job.pid, job.id):
                log.warning("killing the leftover worker %d of %s", job.pid, job.id)
                kill_group(job.pid, signal.SIGKILL)
            clean_work_dir(self.settings.jobs_dir / job.id)
            self.jobs.transition(job.id, "failed", f"Fine-tuning job failed: {RESTARTED.message}", error=RESTARTED)

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self._schedule()
            except Exception:
                log.exception("job scheduling failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _RETRY_S)
            self._wake.clear()

    # ----------------------------------------------------------------------------- scheduling

    async def _schedule(self) -> None:
        async with self._lock:
            for job in await asyncio.to_thread(self.jobs.with_status, "validating_files"):
                missing = await asyncio.to_thread(self._missing_file, job)
                if missing is None:
                    await asyncio.to_thread(self.jobs.transition, job.id, "queued", "Files validated; job queued.")
                else:
                    await asyncio.to_thread(self._fail, job.id, missing)
            model_dir = self.serving.model_dir
            if model_dir is None:
                return
            slots = self.settings.max_concurrent_jobs - len(self._workers)
            if slots <= 0:
                return
            queued = await asyncio.to_thread(self.jobs.with_status, "queued")
            for job in fair_order(queued, [w.tenant for w in self._workers.values()], slots):
                await self._start(job, model_dir)

    def _missing_file(self, job: Job) -> JobFailure | None:
        for param, file_id in (("training_file", job.training_file), ("validation_file", job.validation_file)):
            if file_id is not None and self.files.get(file_id, job.tenant) is None:
                return JobFailure("file_not_found", f"File {file_id!r} was deleted before the job started.", param)
        return None

    def _fail(self, job_id: str, error: JobFailure) -> Job | None:
        return self.jobs.transition(job_id, "failed", f"Fine-tuning job failed: {error.message}", error=error)

    async def _start(self, job: Job, model_dir: Path) -> None:
        missing = await asyncio.to_thread(self._missing_file, job)
        if missing is not None:
            await asyncio.to_thread(self._fail, job.id, missing)
            return
        work_dir = self.settings.jobs_dir / job.id
        work_dir.mkdir(parents=True, exist_ok=True)
        spec_path = work_dir / "spec.json"
        tenant_settings = await asyncio.to_thread(self.tenants.get_settings, job.tenant)
        try:
            spec = worker_spec(
                job,
                self.files,
                self.settings,
                model_dir,
                work_dir,
                system_prompt=tenant_settings.system_prompt,
                grounded=tenant_settings.retrieval.enabled,  # retrieval on: train for it (RAFT)
                plan_name=self.serving.plan_name,
            )
        except InvalidJobSpec as exc:
            await asyncio.to_thread(self._fail, job.id, JobFailure(exc.code, exc.message))
            return
        spec_path.write_text(json.dumps(spec.to_dict(), indent=2))
        if await asyncio.to_thread(self.jobs.transition, job.id, "running", "Fine-tuning job started.") is None:
            return
        env = trainer_env(self.cpu.worker_threads(len(self._workers) + 1))
        try:
            handle = await self.launcher.launch(self.command, spec_path, env, work_dir / "worker.log")
        except OSError:
            log.exception("job %s: the training worker did not start", job.id)  # the details stay in the log
            await asyncio.to_thread(self._fail, job.id, JobFailure("trainer_crashed", "The trainer did not start."))
            return
        if handle.pid is not None:
            await asyncio.to_thread(self.jobs.update, job.id, pid=handle.pid)
        worker = _Worker(job.id, job.tenant, handle)
        self._workers[job.id] = worker
        self._share_cores()
        self._spawn(self._supervise(worker, work_dir))
        log.info("job %s started (pid %s)", job.id, handle.pid)

    def _share_cores(self) -> None:
        """Give the engine the cores the running workers leave it (see :mod:`server.cpu_share`)."""
        self.serving.set_engine_threads(self.cpu.engine_threads(len(self._workers)))

    # ----------------------------------------------------------------------------- one worker

    async def _supervise(self, worker: _Worker, work_dir: Path) -> None:
        reader = asyncio.create_task(self._read_events(worker))
        try:
            returncode = await worker.handle.exit_status()
            try:
                await asyncio.wait_for(asyncio.shield(reader), _DRAIN_S)
            except TimeoutError:
                # A child of the worker still holds its stdout: the worker is gone, so is the job.
                log.warning("job %s: a leftover child kept stdout open; killing the worker's group", worker.job_id)
                worker.handle.signal(signal.SIGKILL)
                reader.cancel()
            await asyncio.to_thread(self._finish, worker, returncode, work_dir)
        except Exception:
            log.exception("supervising %s failed", worker.job_id)
            reader.cancel()
            worker.handle.signal(signal.SIGKILL)
            await worker.handle.exit_status()
            failure = JobFailure("trainer_crashed", "Supervising the trainer failed.")
            await asyncio.to_thread(self._fail, worker.job_id, failure)
        finally:
            self._workers.pop(worker.job_id, None)
            self._share_cores()
            worker.done.set()
            self.wake()

    async def _read_events(self, worker: _Worker) -> None:
        while True:
            try:
                line = await worker.handle.readline()
            except ValueError:  # a line over the limit: skipped, the reader stays usable
                log.warning("job %s: skipped an over-long stdout line", worker.job_id)
                continue
            if not line:
                return
            event = parse_event(line)
            if event is None:
                log.warning("job %s: not an event: %r", worker.job_id, line[:200])
                continue
            if isinstance(event, SucceededEvent | FailedEvent):
                worker.outcome = event
            await asyncio.to_thread(self._record, worker.job_id, event)

    def _record(self, job_id: str, event: WorkerEvent) -> None:
        described = describe_event(event)
        if described is None:
            return
        if isinstance(event, ProgressEvent):
            self.jobs.update(job_id, **progress_fields(event))
        self.jobs.add_event(job_id, described.message, level=described.level, type=described.type, data=described.data)

    def _finish(self, worker: _Worker, returncode: int, work_dir: Path) -> None:
        clean_work_dir(work_dir)  # first: a job that reads as ended has no scratch left
        outcome = worker.outcome
        if isinstance(outcome, SucceededEvent):
            if returncode != 0:
                log.warning("job %s: worker exited %d after publishing", worker.job_id, returncode)
            self.jobs.transition(
                worker.job_id,
                "succeeded",
                "The job has successfully completed.",
                fine_tuned_model=outcome.fine_tuned_model,
                trained_tokens=outcome.trained_tokens,
                metrics=outcome.metrics,
            )
        elif worker.stop_reason == "cancel":
            self.jobs.transition(worker.job_id, "cancelled", _CANCELLED)
        elif worker.stop_reason == "shutdown":
            self._fail(worker.job_id, RESTARTED)
        elif isinstance(outcome, FailedEvent):
            self._fail(worker.job_id, JobFailure(outcome.code, outcome.message))
        else:
            self._fail(worker.job_id, JobFailure("trainer_crashed", crash_message(returncode, work_dir)))
        if not isinstance(outcome, SucceededEvent):
            # A worker killed mid-publish may have left a temp or unrecorded version: never let one linger.
            swept = self.store.sweep()
            if swept:
                log.warning("job %s: removed what its worker left in the adapter store: %s", worker.job_id, swept)

    # ----------------------------------------------------------------------------- cancel

    async def cancel(self, job_id: str) -> Job | None:
        """Cancel the job; returns it once it has ended (or as it is, if it already had)."""
        async with self._lock:
            job = await asyncio.to_thread(self.jobs.get, job_id)
            if job is None or job.finished:
                return job
            worker = self._workers.get(job_id)
            if worker is None:
                cancelled = await asyncio.to_thread(self.jobs.transition, job_id, "cancelled", _CANCELLED)
                return cancelled or await asyncio.to_thread(self.jobs.get, job_id)
            self._signal(worker, "cancel")
        await worker.done.wait()
        return await asyncio.to_thread(self.jobs.get, job_id)

    def _signal(self, worker: _Worker, reason: str) -> None:
        """SIGTERM to the worker's group now, SIGKILL after the grace period."""
        if worker.stop_reason is None:
            worker.stop_reason = reason
        worker.handle.signal(signal.SIGTERM)

        async def escalate() -> None:
            try:
                await asyncio.wait_for(asyncio.shield(worker.done.wait()), self.settings.job_grace_seconds)
            except TimeoutError:
                log.warning("job %s: worker ignored SIGTERM; killing it", worker.job_id)
                worker.handle.signal(signal.SIGKILL)

        self._spawn(escalate())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
