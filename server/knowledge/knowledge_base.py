"""A tenant's knowledge: its passages ranked by their words (BM25) and by their meaning (vectors).

Contract:

- :meth:`KnowledgeBase.add_file` indexes one file's passages for BM25 (:mod:`.passage_index`) and,
  when an embedding model is there and the file has at most ``max_vectors`` passages, embeds them
  (within ``embed_timeout_s``) into the file's vectors (:mod:`.dense_index`). A file without
  vectors (over the cap, too slow, no model, a write that failed: logged) is still searched by
  its words; nothing of that fails the upload. At most :data:`EMBEDDING_UPLOADS` uploads embed
  (or wait to) at once, since each holds a server thread; more are searched by their words only.
  :meth:`backfill_file` embeds such a file later (:mod:`.vector_backfill` calls it), and a file
  whose vectors another model made. :meth:`remove_file` / :meth:`remove_tenant` delete both.
- :meth:`search` is hybrid: the best :data:`POOL` passages by BM25 and the best by cosine
  similarity to the query's embedding, fused by reciprocal rank (each list adds
  ``1 / (RRF_K + rank)``; the dense list counts :data:`DENSE_WEIGHT` times as much, measured with
  ``bench/retrieval_bench.py``), best ``top_k`` first. Without vectors (or a model) it is BM25.
- A file's vectors and passages are kept in memory once read (at most :data:`ROWS_KEPT` rows over
  all tenants, least recently used first out); writing or deleting a file drops what was kept,
  and a read that a write overtook is not kept. Vectors of another width (another embedding
  model) are skipped.
- :meth:`file_passages` is :meth:`.passage_index.PassageIndex.file_passages`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from safetensors import SafetensorError

from server.knowledge.dense_index import DenseIndex
from server.knowledge.embedder_threads import EmbedderThreads
from server.knowledge.passage_index import Passage, PassageIndex

log = logging.getLogger(__name__)
POOL = 16
"""Candidates each ranking gives the fusion."""
RRF_K = 60
DENSE_WEIGHT = 6.0
ROWS_KEPT = 100_000
"""Passage vectors kept in memory (384 fp32 numbers each: about 150 MB at most)."""
FILES_KEPT = 4096
EMBEDDING_UPLOADS = 4
"""Uploads embedding (or waiting to) at once; more are searched by their words only."""
BACKFILL_CHUNK = 32
"""Passages a backfill embeds per turn of the passage thread (about a second on one core)."""


@dataclass(frozen=True)
class _Rows:
    passages: list[Passage]
    vectors: torch.Tensor


def fuse(rankings: Sequence[tuple[float, list[Passage]]], top_k: int) -> list[Passage]:
    """Reciprocal rank fusion: each ``(weight, ranking)`` adds ``weight / (RRF_K + rank)`` to the
    passages it ranks; the ``top_k`` best, each with its fused score. One ranking alone keeps its order."""
    fused: dict[tuple[str, int], float] = {}
    by_key: dict[tuple[str, int], Passage] = {}
    for weight, ranking in rankings:
        for rank, passage in enumerate(ranking, 1):
            key = (passage.file_id, passage.start)
            fused[key] = fused.get(key, 0.0) + weight / (RRF_K + rank)
            by_key.setdefault(key, passage)
    best = sorted(fused, key=lambda k: fused[k], reverse=True)[:top_k]
    return [replace(by_key[k], score=fused[k]) for k in best]


def passage_text(heading: str, text: str) -> str:
    """What a passage's vector is made of: its heading, then its text."""
    return f"{heading}\n{text}" if heading else text


class KnowledgeBase:
    def __init__(
        self,
        passages: PassageIndex,
        dense: DenseIndex,
        embedder: EmbedderThreads | None,
        max_vectors: int,
        embed_timeout_s: float,
    ) -> None:
        self.passages = passages
        self.dense = dense
        self.embedder = embedder
        self.max_vectors = max_vectors
        self.embed_timeout_s = embed_timeout_s
        self._kept: OrderedDict[tuple[str, str], _Rows | None] = OrderedDict()
        self._kept_rows = 0
        self._lock = threading.Lock()
        self._writes = 0
        """Bumped by every forget: a read that a write overtook is not kept."""
        self._embedding = threading.BoundedSemaphore(EMBEDDING_UPLOADS)

    def add_file(self, tenant: str, file_id: str, filename: str, passages: Iterable[dict[str, Any]]) -> int:
        found = list(passages)
        self._forget(tenant, file_id)
        self.dense.remove_file(tenant, file_id)
        count = self.passages.add_file(tenant, file_id, filename, found)
        if self.embedder is None or not 0 < count <= self.max_vectors:
            return count
        if not self._embedding.acquire(blocking=False):  # each waiting upload holds a server thread
            log.warning(
                "%d uploads wait for embeddings already: %s/%s by words only", EMBEDDING_UPLOADS, tenant, file_id
            )
            return count
        try:
            texts = [passage_text(str(p.get("heading", "")), str(p["text"])) for p in found]
            vectors = self.embedder.passages(texts, self.embed_timeout_s)
        finally:
            self._embedding.release()
        self._keep_vectors(tenant, file_id, [int(p["start"]) for p in found], vectors)
        return count

    def backfill_file(self, tenant: str, file_id: str, chunk: int = BACKFILL_CHUNK) -> bool:
        """Embed a file that has passages but no vectors of this model (uploaded while embedding was
        busy, too slow, failing or not prepared; or embedded by another model), ``chunk`` passages per
        turn of the passage thread, so an upload waits behind one chunk at most; whether it now has
        them. Files over ``max_vectors`` passages stay searched by their words."""
        if self.embedder is None:
            return False
        width = self.embedder.width()
        if width is None or self.dense.width(tenant, file_id) == width:
            return False
        found = self.passages.file_passages(tenant, [file_id], self.max_vectors)
        if not found:
            return False
        parts = []
        for first in range(0, len(found), chunk):
            texts = [passage_text(p.heading, p.text) for p in found[first : first + chunk]]
            rows = self.embedder.passages(texts, self.embed_timeout_s)
            if rows is None:
                return False
            parts.append(rows)
        return self._keep_vectors(tenant, file_id, [p.start for p in found], torch.cat(parts))

    def _keep_vectors(self, tenant: str, file_id: str, starts: list[int], vectors: torch.Tensor | None) -> bool:
        """Write a file's vectors (None: none were made); whether they were kept."""
        kept = False
        if vectors is not None:
            try:
                self.dense.write(tenant, file_id, starts, vectors)
                kept = True
            except (OSError, SafetensorError):  # a full disk: the file is kept, searched by its words
                log.exception("the vectors of %s/%s could not be written", tenant, file_id)
            if not self.passages.has_file(tenant, file_id):  # deleted while it was being embedded
                self.dense.remove_file(tenant, file_id)
                kept = False
        self._forget(tenant, file_id)
        return kept

    def remove_file(self, tenant: str, file_id: str) -> None:
        self.passages.remove_file(tenant, file_id)
        self.dense.remove_file(tenant, file_id)
        self._forget(tenant, file_id)

    def remove_tenant(self, tenant: str) -> None:
        self.passages.remove_tenant(tenant)
        self.dense.remove_tenant(tenant)
        self._forget(tenant, None)

    def file_passages(self, tenant: str, files: Sequence[str], limit: int) -> list[Passage] | None:
        return self.passages.file_passages(tenant, files, limit)

    def search(
        self, tenant: str, query: str, files: Sequence[str], top_k: int, dense_weight: float = DENSE_WEIGHT
    ) -> list[Passage]:
        """The fused ranking (``dense_weight``: what the meaning list weighs; the bench varies it)."""
        pool = max(top_k, POOL)
        lexical = self.passages.search(tenant, query, files, pool)
        return fuse([(1.0, lexical), (dense_weight, self.dense_search(tenant, query, files, pool))], top_k)

    def dense_search(self, tenant: str, query: str, files: Sequence[str], count: int) -> list[Passage]:
        """The ``count`` passages of ``files`` closest in meaning to ``query`` (score: cosine)."""
        if self.embedder is None or not files:
            return []
        kept = [rows for rows in (self._rows(tenant, f) for f in files) if rows is not None]
        if not kept:
            return []
        vector = self.embedder.query(query)
        if vector is None:
            return []
        kept = [rows for rows in kept if rows.vectors.shape[1] == vector.shape[0]]  # another model's: skipped
        if not kept:
            return []
        scores = torch.cat([rows.vectors @ vector for rows in kept])
        every = [p for rows in kept for p in rows.passages]
        top = torch.topk(scores, min(count, len(every)))
        return [replace(every[i], score=float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist())]

    def _rows(self, tenant: str, file_id: str) -> _Rows | None:
        key = (tenant, file_id)
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
            writes = self._writes
        rows = self._read(tenant, file_id)
        with self._lock:
            if key not in self._kept and writes == self._writes:
                self._kept[key] = rows
                self._kept_rows += len(rows.passages) if rows else 0
            while self._kept_rows > ROWS_KEPT or len(self._kept) > FILES_KEPT:
                self._drop(next(iter(self._kept)))
        return rows

    def _read(self, tenant: str, file_id: str) -> _Rows | None:
        stored = self.dense.read(tenant, file_id)
        if stored is None:
            return None
        starts, vectors = stored
        passages = self.passages.file_passages(tenant, [file_id], len(starts))
        if passages is None or [p.start for p in passages] != starts:
            return None  # re-indexed meanwhile: the next write brings matching vectors
        return _Rows(passages, vectors)

    def _forget(self, tenant: str, file_id: str | None) -> None:
        """Drop what is kept of one file (None: of every file of the tenant)."""
        with self._lock:
            self._writes += 1
            for key in [k for k in self._kept if k[0] == tenant and file_id in (None, k[1])]:
                self._drop(key)

    def _drop(self, key: tuple[str, str]) -> None:
        rows = self._kept.pop(key, None)
        self._kept_rows -= len(rows.passages) if rows else 0
