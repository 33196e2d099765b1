"""Uploaded training files: a SQLite table plus one file per upload under ``<data>/files/<id>``.

Contract:

- :meth:`FileStore.add` takes a file that already passed ``trainer.check`` and moves it into
  place under a fresh id ``file-<24 hex>``; the row is written only after the file is in place,
  and the file is removed again if the row cannot be written, so a listed file always exists.
- Every read and delete takes the caller's tenant; ``None`` (the admin acting for nobody in
  particular) sees every tenant. Another tenant's id behaves exactly like a missing one.
- :meth:`FileStore.delete` removes the row first, then the bytes: a crash in between leaves an
  orphan file on disk, never a listed file without content.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.database import Database

FILE_ID_PREFIX = "file-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    format TEXT,
    records INTEGER
);
CREATE INDEX IF NOT EXISTS files_tenant ON files(tenant, seq);
"""
_COLUMNS = "seq, id, tenant, filename, purpose, bytes, created_at, format, records"


@dataclass(frozen=True)
class StoredFile:
    """One uploaded file's record."""

    seq: int
    id: str
    tenant: str
    filename: str
    """The name the client sent (base name only); it picks the parser, never a path."""
    purpose: str
    bytes: int
    created_at: int
    """Unix seconds."""
    format: str | None
    """What ``trainer.check`` recognised: ``markdown``, ``pdf``, ``chat_jsonl``, ..."""
    records: int | None
    """Records the checker found (documents' sections, JSONL lines, CSV rows)."""


class FileStore:
    """Files of every tenant; safe to share between threads."""

    def __init__(self, db_path: Path, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = Database(db_path, _SCHEMA)
        self.on_delete: Callable[[StoredFile], None] | None = None
        """Called after a file is deleted (by its owner or by retention): what else keeps it goes too."""

    def sweep(self) -> list[str]:
        """Delete files that have no row (a crash between the move and the insert); returns their
        names. Call it only while no upload is in flight (at start-up)."""
        with self._db.transaction() as db:
            known = {row[0] for row in db.execute("SELECT id FROM files")}
        orphans = [p for p in self.root.iterdir() if p.is_file() and p.name not in known]
        for orphan in orphans:
            orphan.unlink(missing_ok=True)
        return [p.name for p in orphans]

    def path(self, file: StoredFile) -> Path:
        """Where the file's bytes are."""
        return self.root / file.id

    def add(self, tenant: str, filename: str, purpose: str, source: Path, info: dict[str, Any]) -> StoredFile:
        """Move ``source`` (a checked upload) into the store; ``info`` is the checker's verdict."""
        file_id = FILE_ID_PREFIX + uuid.uuid4().hex[:24]
        target = self.root / file_id
        shutil.move(source, target)
        records = info.get("records")
        fmt = info.get("format")
        try:
            with self._db.transaction() as db:
                cursor = db.execute(
                    "INSERT INTO files (id, tenant, filename, purpose, bytes, created_at, format, records) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        file_id,
                        tenant,
                        filename,
                        purpose,
                        target.stat().st_size,
                        int(time.time()),
                        fmt if isinstance(fmt, str) else None,
                        records if type(records) is int else None,
                    ),
                )
                seq = cursor.lastrowid
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        stored = self.get(file_id, tenant)
        assert stored is not None and stored.seq == seq
        return stored

    def get(self, file_id: str, tenant: str | None) -> StoredFile | None:
        """The file, if it exists and ``tenant`` (None: anyone) owns it."""
        sql, args = f"SELECT {_COLUMNS} FROM files WHERE id = ?", [file_id]
        if tenant is not None:
            sql, args = sql + " AND tenant = ?", [*args, tenant]
        with self._db.transaction() as db:
            row = db.execute(sql, args).fetchone()
        return StoredFile(**row) if row else None

    def list_files(
        self,
        tenant: str | None,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10000,
        order: str = "desc",
    ) -> tuple[list[StoredFile], bool]:
        """A page of files, newest first (``order="asc"``: oldest first) and whether more follow.

        ``after`` is the id of the last file of the previous page; an unknown ``after`` gives an
        empty page.
        """
        where, args = ["1 = 1"], list[str]()
        if tenant is not None:
            where, args = [*where, "tenant = ?"], [*args, tenant]
        if purpose is not None:
            where, args = [*where, "purpose = ?"], [*args, purpose]
        if after is not None:
            where.append(
                f"seq {'<' if order == 'desc' else '>'} COALESCE((SELECT seq FROM files WHERE id = ?), "
                f"{'-1' if order == 'desc' else '9223372036854775807'})"
            )
            args.append(after)
        direction = "DESC" if order == "desc" else "ASC"
        sql = f"SELECT {_COLUMNS} FROM files WHERE {' AND '.join(where)} ORDER BY seq {direction} LIMIT ?"
        with self._db.transaction() as db:
            rows = db.execute(sql, [*args, limit + 1]).fetchall()
        files = [StoredFile(**row) for row in rows]
        return files[:limit], len(files) > limit

    def created_before(self, cutoff: int) -> list[str]:
        """Ids of files (of every tenant) uploaded before ``cutoff`` (Unix time), oldest first."""
        with self._db.transaction() as db:
            return [row[0] for row in db.execute("SELECT id FROM files WHERE created_at < ? ORDER BY seq", (cutoff,))]

    def usage(self, tenant: str) -> tuple[int, int]:
        """(files, bytes) that ``tenant`` stores."""
        with self._db.transaction() as db:
            count, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM files WHERE tenant = ?", (tenant,)
            ).fetchone()
        return int(count), int(size)

    def delete(self, file_id: str, tenant: str | None) -> bool:
        """Delete the file; False when it does not exist or ``tenant`` does not own it."""
        stored = self.get(file_id, tenant)
        if stored is None:
            return False
        with self._db.transaction() as db:
            deleted = db.execute("DELETE FROM files WHERE id = ?", [file_id]).rowcount > 0
        if deleted:
            (self.root / file_id).unlink(missing_ok=True)
            if self.on_delete is not None:
                self.on_delete(stored)
        return deleted
