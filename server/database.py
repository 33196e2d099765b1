"""One SQLite file shared by threads and processes: the file and job stores' storage.

Contract: :class:`Database` creates the file (and its parent directory), switches it to WAL and
runs the caller's schema once. :meth:`Database.transaction` opens a fresh connection for one unit
of work, commits it on success, rolls it back on an exception and always closes it, so any thread
(the event loop's helpers, Starlette's thread pool) may call a store at any time and a crash
mid-write never leaves half a change behind. Every transaction begins ``IMMEDIATE``: it holds the
write lock from its first read, so a read-then-write (a job's state change) never acts on a
state another writer changed meanwhile, and never fails half-way with "database is locked"
when it tries to upgrade; writers queue for up to 30 s instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path


class Database:
    """A SQLite file in WAL mode; one short-lived connection per transaction."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")  # not allowed inside a transaction
            connection.executescript(schema)
            connection.commit()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection whose changes commit together when the block ends without an error."""
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as connection:
            connection.row_factory = sqlite3.Row
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
