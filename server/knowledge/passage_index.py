"""Each tenant's passages in a tantivy (BM25) index of its own, under ``<root>/<tenant>``.

Contract:

- :meth:`PassageIndex.add_file` indexes one file's passages (``[{"heading", "text", "start",
  "end"}]``, as ``trainer.check --passages`` writes them), replacing any earlier entry of that
  file; :meth:`remove_file` deletes them (and the tenant's index with its last file's passages);
  :meth:`remove_tenant` deletes the tenant's index.
- :meth:`search` ranks the tenant's passages of the given files by BM25 over their text and
  heading (English stemming) for the words of ``query`` and returns at most ``top_k``
  :class:`Passage`. The query is reduced to at most :data:`MAX_QUERY_TERMS` lower-cased words
  before tantivy sees it, so no query syntax (fields, operators, ranges) ever comes from a user.
- :meth:`file_passages` is every passage of the given files in document order (the files in the
  order given, each by its character offset), or None when there are more than ``limit``;
  :meth:`has_file` whether a file has any.
- Tenants never share an index; a tenant id is validated before it names a directory. Writes
  to one tenant's index are serialized; reads see the last committed state.
- Opened indexes are kept (at most :data:`MAX_OPEN_INDEXES`, least recently used closed first):
  opening one costs about half a millisecond, which every retrieval request used to pay twice
  (search, then the files' passages). Only the HTTP process reads and writes the indexes (engine
  replicas never do), and each write reloads the kept index's reader, so a kept index never
  serves a stale commit; a directory that is gone is never served from the kept ones.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tantivy

from adapters.ids import validate_tenant_id

MAX_QUERY_TERMS = 32
MAX_TERM_CHARS = 40
_WORD = re.compile(r"\w+", re.UNICODE)
_WRITER_HEAP = 15_000_000
MAX_OPEN_INDEXES = 256
"""Opened tenant indexes kept (each holds a few file handles and memory maps)."""


@dataclass(frozen=True)
class Passage:
    file_id: str
    filename: str
    heading: str
    text: str
    start: int
    end: int
    score: float


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("text", stored=True, tokenizer_name="en_stem")
    builder.add_text_field("heading", stored=True, tokenizer_name="en_stem")
    builder.add_text_field("file_id", stored=True, tokenizer_name="raw")
    builder.add_text_field("filename", stored=True, tokenizer_name="raw")
    builder.add_integer_field("start", stored=True)
    builder.add_integer_field("end", stored=True)
    return builder.build()


def query_words(query: str) -> list[str]:
    """The words tantivy is asked for: lower-cased, distinct, in order, bounded."""
    words: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in words and len(word) <= MAX_TERM_CHARS:
            words.append(word)
        if len(words) == MAX_QUERY_TERMS:
            break
    return words


class PassageIndex:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._schema = _schema()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._open: OrderedDict[str, tantivy.Index] = OrderedDict()

    def _dir(self, tenant: str) -> Path:
        validate_tenant_id(tenant)
        return self.root / tenant

    def _lock(self, tenant: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(tenant, threading.Lock())

    def _index(self, tenant: str, create: bool) -> tantivy.Index | None:
        path = self._dir(tenant)
        if not path.is_dir():
            with self._guard:
                self._open.pop(tenant, None)
            if not create:
                return None
            path.mkdir(parents=True, exist_ok=True)
        with self._guard:
            index = self._open.get(tenant)
            if index is not None:
                self._open.move_to_end(tenant)
                return index
        index = tantivy.Index(self._schema, path=str(path))
        with self._guard:
            index = self._open.setdefault(tenant, index)
            while len(self._open) > MAX_OPEN_INDEXES:
                self._open.popitem(last=False)
        return index

    @staticmethod
    def _commit(index: tantivy.Index, writer: tantivy.IndexWriter) -> None:
        """Commit ``writer``'s changes and make the kept ``index`` read them at once."""
        writer.commit()
        writer.wait_merging_threads()
        index.reload()

    def add_file(self, tenant: str, file_id: str, filename: str, passages: Iterable[dict[str, Any]]) -> int:
        """Index ``passages`` of ``file_id`` (replacing its earlier ones); how many were indexed."""
        with self._lock(tenant):
            index = self._index(tenant, create=True)
            assert index is not None
            writer = index.writer(heap_size=_WRITER_HEAP, num_threads=1)
            writer.delete_documents_by_term("file_id", file_id)
            count = 0
            for passage in passages:
                writer.add_document(
                    tantivy.Document(
                        text=str(passage["text"]),
                        heading=str(passage.get("heading", "")),
                        file_id=file_id,
                        filename=filename,
                        start=int(passage["start"]),
                        end=int(passage["end"]),
                    )
                )
                count += 1
            self._commit(index, writer)
        return count

    def remove_file(self, tenant: str, file_id: str) -> None:
        with self._lock(tenant):
            index = self._index(tenant, create=False)
            if index is None:
                return
            writer = index.writer(heap_size=_WRITER_HEAP, num_threads=1)
            writer.delete_documents_by_term("file_id", file_id)
            self._commit(index, writer)
            if index.searcher().num_docs == 0:  # the last file: nothing of the tenant is left on disk
                self._drop(tenant)

    def remove_tenant(self, tenant: str) -> None:
        with self._lock(tenant):
            self._drop(tenant)

    def _drop(self, tenant: str) -> None:
        """Close and delete ``tenant``'s index (its write lock held)."""
        with self._guard:
            self._open.pop(tenant, None)
        shutil.rmtree(self._dir(tenant), ignore_errors=True)

    def search(self, tenant: str, query: str, files: Sequence[str], top_k: int) -> list[Passage]:
        words = query_words(query)
        if not words or not files or top_k <= 0:
            return []
        index = self._index(tenant, create=False)
        if index is None:
            return []
        text_query = index.parse_query(" ".join(words), ["text", "heading"])
        only = tantivy.Query.term_set_query(self._schema, "file_id", list(files))
        query_ = tantivy.Query.boolean_query([(tantivy.Occur.Must, text_query), (tantivy.Occur.Must, only)])
        searcher = index.searcher()
        return [_passage(searcher.doc(address), score) for score, address in searcher.search(query_, top_k).hits]

    def has_file(self, tenant: str, file_id: str) -> bool:
        """Whether any passage of ``file_id`` is indexed."""
        return self.file_passages(tenant, [file_id], 0) is None

    def file_passages(self, tenant: str, files: Sequence[str], limit: int) -> list[Passage] | None:
        if not files:
            return []
        index = self._index(tenant, create=False)
        if index is None:
            return []
        searcher = index.searcher()
        only = tantivy.Query.term_set_query(self._schema, "file_id", list(files))
        hits = searcher.search(only, limit + 1).hits
        if len(hits) > limit:
            return None
        order = {file_id: i for i, file_id in enumerate(files)}
        found = [_passage(searcher.doc(address), 0.0) for _, address in hits]
        return sorted(found, key=lambda p: (order.get(p.file_id, len(order)), p.start))


def _passage(doc: tantivy.Document, score: float) -> Passage:
    return Passage(
        file_id=doc["file_id"][0],
        filename=doc["filename"][0],
        heading=doc["heading"][0],
        text=doc["text"][0],
        start=int(doc["start"][0]),
        end=int(doc["end"][0]),
        score=float(score),
    )
