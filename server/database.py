"""One SQLite file shared by threads and processes: the file and job stores' storage.

Contract: :class:`Database` creates the file (and its parent directory), switches it to WAL and
runs the caller's schema once. :meth:`Database.transaction` opens a fresh connection for one unit
of work, commits it on success, rolls it back on an exception and always closes it, so any thread
(the event loop's helpers, Starlette's thread pool) may call a store at any time and a crash
mid-write never leaves half a change behind.
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
        with self.transaction() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(schema)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection whose changes commit together when the block ends without an error."""
        with closing(sqlite3.connect(self.path, timeout=30)) as connection:
            connection.row_factory = sqlite3.Row
            with connection:
                yield connection
