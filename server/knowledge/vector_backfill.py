"""Vectors for files that were left without them: embedded later, in the background.

Contract: :func:`backfill` walks every tenant's uploaded files (oldest first, a page at a time)
and has :meth:`server.knowledge.knowledge_base.KnowledgeBase.backfill_file` embed each one that
has passages but no vectors of the current embedding model: an upload that arrived while
:data:`~server.knowledge.knowledge_base.EMBEDDING_UPLOADS` others were embedding, one that took
longer than ``SWAPLORA_RETRIEVAL_EMBED_TIMEOUT_S``, one uploaded before an embedding model was
prepared, one whose vectors another model made. Until then such a file is searched by its words.
It returns how many files got vectors; a file that fails is logged and tried again next time.
:func:`keep_backfilling` runs it at once and every ``SWAPLORA_RETRIEVAL_BACKFILL_S`` seconds
(default :data:`EVERY_S`) while the app runs; the app starts it when the base model has loaded.
It embeds on the passage embedder's one thread at one core, a chunk at a time, so uploads go first.
"""

from __future__ import annotations

import asyncio
import logging

from server.jobs.training_files import FileStore
from server.knowledge.knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)
EVERY_S = 600.0
PAGE = 500


def backfill(knowledge: KnowledgeBase, files: FileStore) -> int:
    if knowledge.embedder is None or knowledge.embedder.width() is None:  # no model (yet): nothing to do
        return 0
    embedded, after = 0, None
    while True:
        page, more = files.list_files(None, after=after, limit=PAGE, order="asc")
        for stored in page:
            try:
                embedded += knowledge.backfill_file(stored.tenant, stored.id)
            except Exception:  # one file's failure never stops the others
                log.exception("embedding the passages of %s/%s failed", stored.tenant, stored.id)
        if not more or not page:
            break
        after = page[-1].id
    if embedded:
        log.info("retrieval: embedded the passages of %d files that were searched by words only", embedded)
    return embedded


async def keep_backfilling(knowledge: KnowledgeBase, files: FileStore, every_s: float = EVERY_S) -> None:
    """:func:`backfill` now and every ``every_s`` seconds until cancelled; a failed pass is logged."""
    while True:
        try:
            await asyncio.to_thread(backfill, knowledge, files)
        except Exception:
            log.exception("the retrieval backfill failed; it runs again in %.0f s", every_s)
        await asyncio.sleep(every_s)
