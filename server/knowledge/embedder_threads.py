"""The HTTP process's sentence embedder: queries and uploaded passages, each in a thread of its own.

Contract:

- :meth:`EmbedderThreads.query` is a query's unit vector, or None when ``model_dir`` is None or
  holds no model yet (looked for again on the next call) or the model failed to load (logged
  once): retrieval then ranks by words only. :meth:`warm` loads it ahead of the first request;
  :meth:`width` is its vectors' width. Recent
  queries are remembered (:data:`QUERIES_KEPT`); a query is embedded in about 10-20 ms.
- :meth:`EmbedderThreads.passages` is one row per text, or None when there is no model or the
  texts took longer than ``timeout_s`` (counted from the call: waiting behind another upload
  counts) or torch failed (logged): the file is then searched by its words only. A query whose
  embedding fails is None too: that request is ranked by words.
- Each kind of work has one thread that runs torch with one OpenMP thread: retrieval never takes
  more than a core from the serving engine, a long upload never delays a chat request's query,
  and no idle multi-thread OpenMP pool is left beside the engine's thread (README, "Thread
  pools"). The model is loaded on first use (a few seconds) and shared by both threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import torch

from adapters.text_embedder import TextEmbedder

log = logging.getLogger(__name__)
QUERIES_KEPT = 1024
T = TypeVar("T")


def _one_torch_thread() -> None:
    torch.set_num_threads(1)


class EmbedderThreads:
    def __init__(self, model_dir: Path | None, queries_kept: int = QUERIES_KEPT) -> None:
        self.model_dir = model_dir
        self.queries_kept = queries_kept
        self._model: TextEmbedder | None = None
        self._failed = False
        self._warned = False
        self._loading = threading.Lock()
        self._queries = ThreadPoolExecutor(1, "query-embedder", initializer=_one_torch_thread)
        self._passages = ThreadPoolExecutor(1, "passage-embedder", initializer=_one_torch_thread)
        self._kept: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._kept_lock = threading.Lock()

    def _embedder(self) -> TextEmbedder | None:
        with self._loading:
            if self._model is not None or self._failed or self.model_dir is None:
                return self._model
            if not (self.model_dir / "config.json").is_file():  # not prepared (yet): looked for again next time
                if not self._warned:
                    log.warning("no embedding model in %s: retrieval ranks passages by words only", self.model_dir)
                    self._warned = True
                return None
            try:
                self._model = TextEmbedder.load(self.model_dir)
            except Exception:  # any failure of the optional model leaves retrieval by words, never a 500
                log.exception("the embedding model in %s failed to load: retrieval ranks by words only", self.model_dir)
                self._failed = True
            return self._model

    def width(self) -> int | None:
        """The model's vector width (loading it in the calling thread if need be); None: no model."""
        model = self._embedder()
        return None if model is None else model.dim

    def warm(self) -> bool:
        """Load the model now (in the query thread); whether there is one."""
        try:
            return self._run(self._queries, lambda model: True) is not None
        except RuntimeError:  # closed already
            return False

    def _run(self, pool: ThreadPoolExecutor, work: Callable[[TextEmbedder], T]) -> T | None:
        def task() -> T | None:
            model = self._embedder()
            return None if model is None else work(model)

        return pool.submit(task).result()

    def query(self, text: str) -> torch.Tensor | None:
        with self._kept_lock:
            kept = self._kept.get(text)
            if kept is not None:
                self._kept.move_to_end(text)
                return kept
        try:
            rows = self._run(self._queries, lambda model: model.embed([text]))
        except Exception:  # the request goes on, ranked by words
            log.exception("embedding a query failed")
            return None
        if rows is None:
            return None
        with self._kept_lock:
            self._kept[text] = rows[0]
            while len(self._kept) > self.queries_kept:
                self._kept.popitem(last=False)
        return rows[0]

    def passages(self, texts: Sequence[str], timeout_s: float) -> torch.Tensor | None:
        deadline = time.monotonic() + timeout_s
        try:
            return self._run(self._passages, lambda model: model.embed(texts, deadline=deadline))
        except TimeoutError as exc:
            log.warning("embedding %d passages took longer than %.0f s (%s)", len(texts), timeout_s, exc)
            return None
        except Exception:
            log.exception("embedding %d passages failed", len(texts))
            return None

    def close(self) -> None:
        self._queries.shutdown(wait=False, cancel_futures=True)
        self._passages.shutdown(wait=False, cancel_futures=True)
