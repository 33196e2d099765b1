"""What a crashed server left on disk, removed at start-up before the first request.

:func:`sweep` empties ``<data>/tmp`` (upload spools: an upload in flight when the process died),
removes the adapter store's half-written versions and half-deleted directories
(:meth:`adapters.store.AdapterStore.sweep`) and the training files that never got their database
row (:meth:`server.jobs.training_files.FileStore.sweep`) and half-written passage vectors
(``<data>/knowledge-vectors/<tenant>/.tmp*``). It runs before the server accepts requests, so nothing
it removes belongs to a live upload of this server; the store's own lock keeps it off a publish
that another process (``swaplora train``) has in flight.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from adapters.store import AdapterStore
from server.jobs.training_files import FileStore

log = logging.getLogger(__name__)


def sweep(data: Path, store: AdapterStore, files: FileStore) -> dict[str, int]:
    """Remove the leftovers (see the module docstring); returns how many of each kind went."""
    spools = 0
    tmp = data / "tmp"
    if tmp.is_dir():
        for entry in tmp.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            spools += 1
    vectors = list((data / "knowledge-vectors").glob("*/.tmp*"))  # ours (.tmp-*) and safetensors' own
    for entry in vectors:
        entry.unlink(missing_ok=True)
    counts = {
        "upload_spools": spools,
        "store_leftovers": len(store.sweep()),
        "orphan_files": len(files.sweep()),
        "vector_spools": len(vectors),
    }
    if any(counts.values()):
        log.warning("removed what an earlier crash left behind: %s", counts)
    return counts
