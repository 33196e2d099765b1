"""Retention: job logs and training files older than the operator's settings are deleted.

Contract: :func:`sweep_expired` deletes, as of ``now``,

- the events and the work directory (``<data>/jobs/<id>``: spec and ``worker.log``) of every job
  that finished more than ``SWAPLORA_JOB_LOG_RETENTION_DAYS`` ago (the job itself stays, with
  one event saying its log was deleted), and
- every training file older than ``SWAPLORA_FILE_RETENTION_DAYS`` that no unfinished job uses;

a setting left unset keeps those forever (tenants delete with ``DELETE /v1/files/{id}`` and
``DELETE /v1/fine_tuning/jobs/{id}``; quotas bound the total). :func:`keep_sweeping` runs it at
start-up and every :data:`EVERY_S` seconds while the app runs.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass

from server.jobs.job_store import UNFINISHED, JobStore
from server.jobs.training_files import FileStore
from server.settings import Settings

log = logging.getLogger(__name__)
DAY_S = 86400
EVERY_S = 3600.0


@dataclass(frozen=True)
class Swept:
    job_logs: int = 0
    files: int = 0


def sweep_expired(jobs: JobStore, files: FileStore, settings: Settings, now: float | None = None) -> Swept:
    """Delete what has outlived its retention (see the module docstring)."""
    now = time.time() if now is None else now
    job_logs = deleted_files = 0
    if settings.job_log_retention_days is not None:
        for job_id in jobs.expire_events(int(now - settings.job_log_retention_days * DAY_S)):
            shutil.rmtree(settings.jobs_dir / job_id, ignore_errors=True)
            job_logs += 1
    if settings.file_retention_days is not None:
        in_use = {
            name for job in jobs.with_status(*UNFINISHED) for name in (job.training_file, job.validation_file) if name
        }
        for file_id in files.created_before(int(now - settings.file_retention_days * DAY_S)):
            if file_id not in in_use and files.delete(file_id, None):
                deleted_files += 1
    if job_logs or deleted_files:
        log.info("retention: deleted the logs of %d jobs and %d training files", job_logs, deleted_files)
    return Swept(job_logs, deleted_files)


async def keep_sweeping(jobs: JobStore, files: FileStore, settings: Settings, every_s: float = EVERY_S) -> None:
    """:func:`sweep_expired` now and every ``every_s`` seconds until cancelled; a failed sweep is logged."""
    while True:
        try:
            await asyncio.to_thread(sweep_expired, jobs, files, settings)
        except Exception:
            log.exception("the retention sweep failed; it runs again in %.0f s", every_s)
        await asyncio.sleep(every_s)
