"""Every chat completion served, by id: which version answered, how fast, and (optionally) what was said.

Contract:

- :meth:`ServedLog.record` is thread-safe and never touches the disk: entries wait in a bounded
  buffer (beyond :data:`MAX_BUFFER` unflushed entries new ones are dropped and counted) that a
  background thread writes every second in one transaction (:meth:`ServedLog.start`; also
  :meth:`ServedLog.flush`, called on shutdown). :meth:`ServedLog.get` sees buffered entries too,
  so feedback on an answer that just ended finds it.
- ``conversation`` (the request's messages and the answer, as JSON) is kept only when the caller
  passes it, which the chat route does only for tenants with ``store_conversations`` on; each is
  capped at :data:`MAX_CONVERSATION_CHARS` (longer ones are not stored at all, never cut).
- :meth:`ServedLog.sweep` deletes entries older than a number of days, with their feedback; the
  flusher runs it hourly with ``retention_days`` (``SWAPLORA_SERVED_RETENTION_DAYS``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path

from server.database import Database

log = logging.getLogger(__name__)
MAX_BUFFER = 10_000
MAX_CONVERSATION_CHARS = 256 * 1024
FLUSH_EVERY_S = 1.0
SWEEP_EVERY_S = 3600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS served (
    id TEXT PRIMARY KEY,
    tenant TEXT,
    adapter TEXT NOT NULL,
    version INTEGER,
    model TEXT NOT NULL,
    created_at REAL NOT NULL,
    ttft_ms REAL,
    latency_ms REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    conversation TEXT
);
CREATE INDEX IF NOT EXISTS served_adapter ON served(tenant, adapter, version);
CREATE INDEX IF NOT EXISTS served_created ON served(created_at);
CREATE TABLE IF NOT EXISTS feedback (
    completion_id TEXT PRIMARY KEY,
    tenant TEXT,
    adapter TEXT NOT NULL,
    version INTEGER,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_adapter ON feedback(tenant, adapter, version);
"""
"""Both tables: a rating belongs to the completion it rates (and goes with it)."""


@dataclass(frozen=True)
class Served:
    """One completion as served."""

    id: str
    tenant: str | None
    adapter: str
    """``tenant/name`` of the adapter, or ``base``."""
    version: int | None
    model: str
    """The id that answered: ``base`` or ``tenant/name@version``."""
    created_at: float
    ttft_ms: float | None
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    conversation: str | None = None
    """JSON ``{"messages": [...], "answer": "..."}`` where the tenant stores conversations."""


_COLUMNS = ", ".join(f.name for f in fields(Served))


class ServedLog:
    """See the module docstring."""

    def __init__(self, db_path: Path, retention_days: float | None = None) -> None:
        self._db = Database(db_path, SCHEMA)
        self.retention_days = retention_days
        self._swept_at = 0.0
        self._buffer: dict[str, Served] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def record(self, served: Served) -> None:
        if served.conversation is not None and len(served.conversation) > MAX_CONVERSATION_CHARS:
            served = _without_text(served)
        with self._lock:
            if len(self._buffer) >= MAX_BUFFER:
                self.dropped += 1
                return
            self._buffer[served.id] = served

    def get(self, completion_id: str) -> Served | None:
        with self._lock:
            buffered = self._buffer.get(completion_id)
        if buffered is not None:
            return buffered
        with self._db.transaction() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM served WHERE id = ?", (completion_id,)).fetchone()
        return Served(*row) if row else None

    def flush(self) -> int:
        with self._lock:
            pending, self._buffer = list(self._buffer.values()), {}
        if pending:
            marks = ", ".join("?" * len(fields(Served)))
            with self._db.transaction() as db:
                db.executemany(f"INSERT OR IGNORE INTO served ({_COLUMNS}) VALUES ({marks})", map(astuple, pending))
        return len(pending)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="swaplora-served-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()

    def _run(self) -> None:
        while not self._stopping.wait(FLUSH_EVERY_S):
            try:
                self.flush()
                if self.retention_days is not None and time.monotonic() - self._swept_at > SWEEP_EVERY_S:
                    self._swept_at = time.monotonic()
                    self.sweep(self.retention_days)
            except Exception:  # the next second tries again; a full disk must not kill the thread
                log.exception("writing the served log failed")

    def sweep(self, older_than_days: float) -> int:
        """Delete entries (and their feedback) older than ``older_than_days``."""
        cutoff = time.time() - older_than_days * 86400
        with self._db.transaction() as db:
            db.execute(
                "DELETE FROM feedback WHERE completion_id IN (SELECT id FROM served WHERE created_at < ?)", (cutoff,)
            )
            return db.execute("DELETE FROM served WHERE created_at < ?", (cutoff,)).rowcount

    def conversations(self, tenant: str, limit: int) -> list[Served]:
        """The tenant's stored conversations, newest first."""
        query = f"SELECT {_COLUMNS} FROM served WHERE tenant = ? AND conversation IS NOT NULL"
        with self._db.transaction() as db:
            rows = db.execute(query + " ORDER BY created_at DESC LIMIT ?", (tenant, limit)).fetchall()
        return [Served(*row) for row in rows]

    def latencies(
        self, tenant: str, adapter: str, limit: int = 10_000
    ) -> dict[int | None, list[tuple[float, float | None]]]:
        """Per version, the latest ``limit`` (latency, time to first token) pairs in ms, and counts."""
        self.flush()
        with self._db.transaction() as db:
            versions = db.execute(
                "SELECT version FROM served WHERE tenant IS ? AND adapter = ? GROUP BY version", (tenant, adapter)
            ).fetchall()
            out: dict[int | None, list[tuple[float, float | None]]] = {}
            for (version,) in versions:
                rows = db.execute(
                    "SELECT latency_ms, ttft_ms FROM served WHERE tenant IS ? AND adapter = ? AND version IS ? "
                    "ORDER BY created_at DESC LIMIT ?",
                    (tenant, adapter, version, limit),
                ).fetchall()
                out[version] = [(r[0], r[1]) for r in rows]
        return out

    def counts(self, tenant: str, adapter: str) -> dict[int | None, int]:
        """Requests served per version."""
        self.flush()
        with self._db.transaction() as db:
            rows = db.execute(
                "SELECT version, COUNT(*) FROM served WHERE tenant IS ? AND adapter = ? GROUP BY version",
                (tenant, adapter),
            ).fetchall()
        return {version: count for version, count in rows}


def _without_text(served: Served) -> Served:
    return replace(served, conversation=None)
