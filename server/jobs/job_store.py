"""Fine-tuning jobs and their events, in SQLite under the data directory.

Contract:

- A job moves only along ``validating_files -> queued -> running -> succeeded | failed |
  cancelled`` (and from any non-final state straight to ``failed`` or ``cancelled``).
  :meth:`JobStore.transition` checks the move and writes the new state, its fields and an event
  in one transaction; a move that is not allowed (the job already ended, say, because a cancel
  and the worker's last event raced) changes nothing and returns None.
- Events are numbered in the order they were written; lists page newest first like OpenAI's
  (``after`` = the id of the last event already seen), :meth:`JobStore.events_since` reads
  them oldest first for a live stream.
- Reads take the caller's tenant; None (the admin) sees every tenant; another tenant's job is
  indistinguishable from a missing one. The state survives a restart (the runner then fails
  jobs left ``running``).
- A job's ``method`` is its training method's settings (:mod:`adapters.training_method`,
  ``{"type": "dpo", "beta": 0.1}``); a database made before methods existed gains the column
  when a store opens it, and its jobs read as supervised.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.database import Database

JOB_ID_PREFIX = "ftjob-"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
_NEXT: dict[str, frozenset[str]] = {
    "validating_files": frozenset({"queued", "failed", "cancelled"}),
    "queued": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "cancelled"}),
}
UNFINISHED = frozenset(_NEXT)
"""States a job can still leave."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    model TEXT NOT NULL,
    training_file TEXT NOT NULL,
    validation_file TEXT,
    suffix TEXT NOT NULL,
    hyperparameters TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    fine_tuned_model TEXT,
    trained_tokens INTEGER,
    error_code TEXT,
    error_message TEXT,
    error_param TEXT,
    metrics TEXT,
    step INTEGER,
    total_steps INTEGER,
    estimated_finish INTEGER,
    pid INTEGER,
    method TEXT
);
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs(tenant, seq);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
CREATE TABLE IF NOT EXISTS job_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL REFERENCES jobs(id),
    created_at INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT
);
CREATE INDEX IF NOT EXISTS job_events_job ON job_events(job_id, seq);
"""
# Columns a transition may set besides the status (a whitelist: names go into SQL text).
_UPDATABLE = frozenset(
    {
        "started_at",
        "finished_at",
        "fine_tuned_model",
        "trained_tokens",
        "error_code",
        "error_message",
        "error_param",
        "metrics",
        "step",
        "total_steps",
        "estimated_finish",
        "pid",
    }
)


@dataclass(frozen=True)
class JobFailure:
    """Why a job ended ``failed``, as recorded and shown in the job's ``error`` object.

    Named for what it is, a record and not an exception (so not ``*Error``; it was ``JobError``,
    the name the trainer's exception ``trainer.job.JobError`` also has). ``code`` is stable (the
    runner's codes, or the worker's from its ``failed`` event); ``param`` names the request field
    at fault, if one is.
    """

    code: str
    message: str
    param: str | None = None


@dataclass(frozen=True)
class Job:
    """One fine-tuning job as stored."""

    seq: int
    id: str
    tenant: str
    model: str
    """``base`` or the adapter id training continues from."""
    training_file: str
    validation_file: str | None
    suffix: str
    """Name of the adapter the job publishes: ``<tenant>/<suffix>``."""
    hyperparameters: dict[str, Any]
    """As the caller sent them (the worker fills in defaults)."""
    seed: int
    status: str
    created_at: int
    started_at: int | None
    finished_at: int | None
    fine_tuned_model: str | None
    trained_tokens: int | None
    error: JobFailure | None
    metrics: dict[str, Any] | None
    step: int | None
    total_steps: int | None
    estimated_finish: int | None
    pid: int | None
    """Process (and process group) id of the worker while the job runs."""
    method: dict[str, Any]
    """The training method's settings (``{"type": "supervised"}`` for jobs made before methods)."""

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class JobEvent:
    seq: int
    id: str
    job_id: str
    created_at: int
    level: str
    """``info``, ``warn`` or ``error``."""
    message: str
    type: str
    """``message`` or ``metrics``."""
    data: dict[str, Any] | None


def _job(row: Any) -> Job:
    values = dict(row)
    code, message, param = values.pop("error_code"), values.pop("error_message"), values.pop("error_param")
    values["error"] = JobFailure(code, message or "", param) if code else None
    values["hyperparameters"] = json.loads(values["hyperparameters"])
    values["metrics"] = json.loads(values["metrics"]) if values["metrics"] else None
    values["method"] = json.loads(values["method"]) if values["method"] else {"type": "supervised"}
    return Job(**values)


def _event(row: Any) -> JobEvent:
    values = dict(row)
    values["data"] = json.loads(values["data"]) if values["data"] else None
    return JobEvent(**values)


def _insert_event(db: Any, job_id: str, message: str, level: str, type: str, data: dict[str, Any] | None) -> None:
    db.execute(
        "INSERT INTO job_events (id, job_id, created_at, level, message, type, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            "ftevent-" + uuid.uuid4().hex[:24],
            job_id,
            int(time.time()),
            level,
            message,
            type,
            json.dumps(data) if data is not None else None,
        ),
    )


class JobStore:
    """Jobs and events of every tenant; safe to share between threads and processes."""

    def __init__(self, db_path: Path) -> None:
        self._db = Database(db_path, _SCHEMA)
        with self._db.transaction() as db:
            if "method" not in {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}:
                db.execute("ALTER TABLE jobs ADD COLUMN method TEXT")  # a database from before methods

    def create(
        self,
        *,
        tenant: str,
        model: str,
        training_file: str,
        validation_file: str | None,
        suffix: str,
        hyperparameters: dict[str, Any],
        seed: int,
        method: dict[str, Any] | None = None,
    ) -> Job:
        """A new job in ``validating_files`` (``method`` None: supervised)."""
        job_id = JOB_ID_PREFIX + uuid.uuid4().hex[:24]
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, tenant, model, training_file, validation_file, suffix, hyperparameters, "
                "seed, status, created_at, method) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'validating_files', ?, ?)",
                (
                    job_id,
                    tenant,
                    model,
                    training_file,
                    validation_file,
                    suffix,
                    json.dumps(hyperparameters),
                    seed,
                    int(time.time()),
                    json.dumps(method or {"type": "supervised"}),
                ),
            )
            _insert_event(db, job_id, f"Created fine-tuning job: {job_id}", "info", "message", None)
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str, tenant: str | None = None) -> Job | None:
        sql, args = "SELECT * FROM jobs WHERE id = ?", [job_id]
        if tenant is not None:
            sql, args = sql + " AND tenant = ?", [*args, tenant]
        with self._db.transaction() as db:
            row = db.execute(sql, args).fetchone()
        return _job(row) if row else None

    def list_jobs(self, tenant: str | None, *, after: str | None = None, limit: int = 20) -> tuple[list[Job], bool]:
        """A page of jobs, newest first, and whether more follow; ``after``: last id already seen."""
        where, args = ["1 = 1"], list[str]()
        if tenant is not None:
            where, args = [*where, "tenant = ?"], [*args, tenant]
        if after is not None:
            where, args = [*where, "seq < COALESCE((SELECT seq FROM jobs WHERE id = ?), -1)"], [*args, after]
        sql = f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"
        with self._db.transaction() as db:
            rows = db.execute(sql, [*args, limit + 1]).fetchall()
        return [_job(r) for r in rows[:limit]], len(rows) > limit

    def with_status(self, *statuses: str) -> list[Job]:
        """Every job in one of ``statuses``, oldest first (the runner's queue)."""
        marks = ", ".join("?" for _ in statuses)
        with self._db.transaction() as db:
            rows = db.execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY seq", statuses).fetchall()
        return [_job(r) for r in rows]

    def transition(
        self,
        job_id: str,
        status: str,
        message: str,
        *,
        level: str = "info",
        error: JobFailure | None = None,
        **fields: Any,
    ) -> Job | None:
        """Move the job to ``status`` with ``fields`` and an event; None if the move is not allowed."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        now = int(time.time())
        if status == "running":
            fields.setdefault("started_at", now)
        if status in TERMINAL:
            fields.setdefault("finished_at", now)
            fields.setdefault("estimated_finish", None)
        if error is not None:
            fields.update(error_code=error.code, error_message=error.message, error_param=error.param)
        if isinstance(fields.get("metrics"), dict):
            fields["metrics"] = json.dumps(fields["metrics"])
        with self._db.transaction() as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or status not in _NEXT.get(row["status"], frozenset()):
                return None
            assignments = ", ".join(f"{name} = ?" for name in ["status", *fields])
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [status, *fields.values(), job_id])
            _insert_event(db, job_id, message, "error" if error is not None else level, "message", None)
        return self.get(job_id)

    def update(self, job_id: str, **fields: Any) -> None:
        """Set progress fields (or the pid) of a job without changing its state."""
        unknown = set(fields) - _UPDATABLE
        if unknown or not fields:
            raise ValueError(f"not updatable: {sorted(unknown) or 'nothing'}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._db.transaction() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*fields.values(), job_id])

    def add_event(
        self,
        job_id: str,
        message: str,
        *,
        level: str = "info",
        type: str = "message",
        data: dict[str, Any] | None = None,
    ) -> None:
        with self._db.transaction() as db:
            _insert_event(db, job_id, message, level, type, data)

    def events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> tuple[list[JobEvent], bool]:
        """A page of the job's events, newest first, and whether more follow."""
        where, args = "job_id = ?", [job_id]
        if after is not None:
            where += " AND seq < COALESCE((SELECT seq FROM job_events WHERE id = ? AND job_id = ?), -1)"
            args += [after, job_id]
        with self._db.transaction() as db:
            rows = db.execute(
                f"SELECT * FROM job_events WHERE {where} ORDER BY seq DESC LIMIT ?", [*args, limit + 1]
            ).fetchall()
        return [_event(r) for r in rows[:limit]], len(rows) > limit

    def ids_of(self, tenant: str) -> list[str]:
        """Every job id of ``tenant``."""
        with self._db.transaction() as db:
            return [row[0] for row in db.execute("SELECT id FROM jobs WHERE tenant = ?", (tenant,))]

    def delete(self, job_id: str, tenant: str | None) -> str | None:
        """Delete a finished job with its events; returns the status it had (None: no such job of
        ``tenant``). A job that has not finished is left alone (its status is returned)."""
        sql, args = "SELECT status FROM jobs WHERE id = ?", [job_id]
        if tenant is not None:
            sql, args = sql + " AND tenant = ?", [*args, tenant]
        with self._db.transaction() as db:
            row = db.execute(sql, args).fetchone()
            if row is not None and row["status"] in TERMINAL:
                db.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else str(row["status"])

    def expire_events(self, finished_before: int) -> list[str]:
        """Delete the events of jobs that finished before ``finished_before`` (Unix time), leaving
        one event that says so; returns those jobs' ids."""
        with self._db.transaction() as db:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT DISTINCT j.id FROM jobs j JOIN job_events e ON e.job_id = j.id "
                    "WHERE j.finished_at < ? AND e.type != 'retention'",
                    (finished_before,),
                )
            ]
            for job_id in ids:
                db.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
                _insert_event(db, job_id, "Older events were deleted (log retention).", "info", "retention", None)
        return ids

    def events_since(self, job_id: str, seq: int) -> list[JobEvent]:
        """The job's events written after event number ``seq``, oldest first."""
        with self._db.transaction() as db:
            rows = db.execute(
                "SELECT * FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq", (job_id, seq)
            ).fetchall()
        return [_event(r) for r in rows]
