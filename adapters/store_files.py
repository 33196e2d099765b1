"""Crash-safe file operations of the adapter store: a reader sees a file or directory whole or not at all.

Contract: :func:`write_atomic` replaces a small text file by rename (fsynced, directory too);
:func:`write_file` creates a file that must not exist yet and fsyncs it; :func:`remove_dir`
renames a directory out of sight (dot-prefixed trash) before deleting it; :func:`is_atomic_tmp`
recognises what an interrupted :func:`write_atomic` left behind, for the store's sweep.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def write_file(path: Path, content: Path | bytes) -> None:
    with open(path, "xb") as out:
        if isinstance(content, bytes):
            out.write(content)
        else:
            with open(content, "rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
        out.flush()
        os.fsync(out.fileno())


def is_atomic_tmp(entry: Path) -> bool:
    """A leftover of :func:`write_atomic`: ``.<name>.<32 hex>``."""
    stem, _, suffix = entry.name.rpartition(".")
    return (
        entry.name.startswith(".") and bool(stem) and len(suffix) == 32 and all(c in "0123456789abcdef" for c in suffix)
    )


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old or the new content, never half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_dir(directory: Path) -> None:
    """Rename out of sight first, then delete, so readers never see a half-deleted directory."""
    trash = directory.with_name(f".trash-{uuid.uuid4().hex}")
    os.rename(directory, trash)
    fsync_dir(directory.parent)
    shutil.rmtree(trash, ignore_errors=True)


def remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
