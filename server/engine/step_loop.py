"""The model engine: one worker thread owns the model and decodes every request in one batch.

Contract:
- :meth:`Engine.submit` is thread-safe and never blocks; it returns a :class:`RequestHandle`.
  The engine calls the request's ``emit`` callback from its worker thread with
  :class:`TextDelta` pieces and one final :class:`Finished` per choice (:mod:`server.engine.requests`).
- Waiting requests are admitted round-robin across tenants (:class:`~server.engine.fair_queue.FairQueue`);
  a request with ``max_running`` waits while its tenant holds that many rows of the batch.
- Prefix cache: an admitted request starts from the longest run of its prompt's blocks already
  computed for the same adapter and ``cache_salt`` (:mod:`server.engine.prefix_reuse`) and
  prefills only the rest; its full blocks are stored when its prefill ends.
- Continuous batching: a request is prefilled alone, at most ``prefill_chunk`` prompt tokens per
  engine step, each step followed by a decode step of the running rows (so a long prompt never
  stalls everyone's decode for long); it then forks into its ``n`` rows (:mod:`server.engine.rows`)
  that join the running batch; a row leaves when it hits EOS, a stop string, the end of its
  grammar or ``max_tokens``, or at the first step after :meth:`RequestHandle.cancel`.
- Rows with different adapters (or none), sampling rules and grammars share every forward pass
  (:mod:`server.engine.logits_processing`); attention is :mod:`server.engine.gqa_attention`.
- Nothing here imports starlette; an exception in a step fails the affected rows, never the thread.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable

import torch
from transformers import DynamicCache

from adapters.base_model import LoadedBase
from server.engine.adapter_cache import AdapterCache, CacheEvents
from server.engine.fair_queue import FairQueue
from server.engine.gqa_attention import use as use_gqa_attention
from server.engine.kv_batch import KVBatch
from server.engine.logits_processing import GrammarMasks
from server.engine.lora_batch import inject
from server.engine.lora_stack import load_lora
from server.engine.prefix_reuse import PrefixReuse
from server.engine.prompt_scoring import prompt_logprobs
from server.engine.requests import Finished, GenerationRequest, RequestHandle, TextDelta
from server.engine.rows import Row, choose_tokens, fork, new_row
from server.metrics import Metrics

log = logging.getLogger(__name__)
IDLE_WAIT_S = 0.5


class Engine:
    """See the module docstring."""

    def __init__(
        self,
        base: LoadedBase,
        *,
        max_batch_size: int = 16,
        adapter_cache_bytes: int = 1 << 30,
        adapter_host_cache_bytes: int = 2 << 30,
        max_prefills_per_step: int = 2,
        prefill_chunk: int = 256,
        prefix_cache_bytes: int = 0,
        prefix_block_tokens: int = 16,
        threads: int | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.base = base
        self.max_batch_size = max_batch_size
        self.max_prefills_per_step = max_prefills_per_step
        self.prefill_chunk = prefill_chunk
        self.threads = threads
        self.metrics = metrics or Metrics()
        # LoRA math in fp32 on the CPU (no fast bf16 matmul there), in bf16 on accelerators.
        self._lora_dtype = torch.float32 if base.device.type == "cpu" else torch.bfloat16
        self._lora = inject(base.model, base.linear_shapes)
        use_gqa_attention(base.model)
        self.adapters = AdapterCache(
            lambda path: load_lora(path, self._lora_dtype, base.device),
            adapter_cache_bytes,
            adapter_host_cache_bytes,
            base.device,
            CacheEvents(
                on_load=self._on_adapter_load,
                on_hit=self.metrics.adapter_hits.inc,
                on_host_hit=self.metrics.adapter_host_hits.inc,
                on_evict=self.metrics.adapter_evictions.inc,
            ),
        )
        self.prefixes = PrefixReuse(prefix_cache_bytes, prefix_block_tokens, self.metrics)
        self._masks = GrammarMasks(len(base.tokenizer))
        self._queue: FairQueue[tuple[GenerationRequest, RequestHandle]] = FairQueue()
        self._rows: list[Row] = []
        self._prefilling: list[Row] = []
        self._kv = KVBatch()
        self._stopping = threading.Event()
        # transformers 5.x renamed ``past_key_values`` to ``cache``; accept either release line.
        params = inspect.signature(type(base.model).forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._thread = threading.Thread(target=self._run, name="swaplora-engine", daemon=True)

    # -- submitter side -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker; every unfinished request ends with an ``error`` event."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, request: GenerationRequest) -> RequestHandle:
        handle = RequestHandle()
        if self._stopping.is_set():
            _refuse(request, "The engine is shutting down.")
            return handle
        if request.n > self.max_batch_size:
            _refuse(request, f"n={request.n} exceeds the batch of {self.max_batch_size} rows.")
            return handle
        self._queue.put(request.tenant, (request, handle))
        self.metrics.waiting.set(self._queue.qsize())
        return handle

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def waiting_for(self, tenant: str | None) -> int:
        return self._queue.waiting(tenant)

    @property
    def running(self) -> int:
        return len(self._rows)

    # -- worker side ------------------------------------------------------------------------
    def set_threads(self, threads: int) -> None:
        """Compute with ``threads`` torch threads from the next step on (thread-safe)."""
        self.threads = threads

    def _run(self) -> None:
        applied = None
        while not self._stopping.is_set():
            if self.threads and self.threads != applied:
                applied = self.threads
                torch.set_num_threads(applied)  # here: OpenMP thread counts are per calling thread
            try:
                self._admit()
                if self._prefilling:
                    self._prefill_step()
                if self._rows:
                    self._decode_step()
            except Exception:  # a bug must not kill the only thread that serves
                reference = _error_reference()
                log.exception("engine step failed [%s]; failing the running batch", reference)
                self._fail_all(f"Internal error while generating (error {reference}).")
        self._fail_all("The engine is shutting down.")
        while not self._queue.empty():
            request, _ = self._queue.get(timeout=0)
            _refuse(request, "The engine is shutting down.")

    def _occupied(self, tenant: str | None = None, everyone: bool = True) -> int:
        """Batch rows held (a request being prefilled holds its ``n``), by everyone or by ``tenant``."""
        running = sum(1 for r in self._rows if everyone or r.request.tenant == tenant)
        return running + sum(r.request.n for r in self._prefilling if everyone or r.request.tenant == tenant)

    def _admit(self) -> None:
        """Take up to ``max_prefills_per_step`` queued requests (round-robin over tenants) while
        the batch has room; wait briefly when there is nothing else to do."""
        for admitted in range(self.max_prefills_per_step):
            idle = not self._rows and not self._prefilling and admitted == 0
            try:
                # Idle: sleep until a request arrives (put() wakes the wait at once); the timeout
                # only bounds how late a stop() is noticed, so it can be long: an idle server
                # wakes twice a second, not twenty times.
                request, handle = self._queue.get(timeout=IDLE_WAIT_S if idle else 0, admissible=self._has_room)
            except queue.Empty:
                return
            self.metrics.waiting.set(self._queue.qsize())
            self.metrics.queue_time.observe(time.monotonic() - request.submitted_at)
            row = new_row(request, handle, self.base.tokenizer, self.base.eos_token_ids)
            try:
                row.adapter_key = self.adapters.acquire(request.adapter)
                row.pinned = True
                self.metrics.loaded_adapters.set(len(self.adapters.loaded_keys))
            except Exception as exc:
                reference = _error_reference()
                log.warning("adapter load failed [%s]: %s", reference, exc)
                name = request.adapter.key if request.adapter is not None else "base"
                self._finish(row, "error", f"The adapter {name} could not be loaded (error {reference}).")
                continue
            row.cache = self.prefixes.start(row)
            self._prefilling.append(row)

    def _has_room(self, tenant: str | None, item: tuple[GenerationRequest, RequestHandle]) -> bool:
        """Whether the batch has room for the request's rows, and its tenant holds fewer batch
        rows than its ``max_running`` allows."""
        request = item[0]
        if self._occupied() + request.n > self.max_batch_size:
            return False
        return request.max_running is None or self._occupied(tenant, everyone=False) + request.n <= max(
            request.max_running, request.n
        )

    def _prefill_step(self) -> None:
        """Prefill at most ``prefill_chunk`` prompt tokens, oldest admission first, then return so
        the running rows decode: a long prompt is prefilled in chunks between decode steps."""
        budget = self.prefill_chunk
        while self._prefilling and budget > 0:
            row = self._prefilling[0]
            assert row.cache is not None  # admission gave the row its own cache
            prompt = row.request.prompt_ids
            if row.handle.cancelled:
                self._prefilling.pop(0)
                self._finish(row, "cancelled")
                continue
            start, stop = row.prefilled, min(len(prompt), row.prefilled + budget)
            ids = torch.tensor([prompt[start:stop]], dtype=torch.long, device=self.base.device)
            scored = row.request.params.prompt_logprobs
            try:
                logits = self._forward(
                    ids,
                    attention_mask=torch.ones((1, stop), dtype=torch.long, device=self.base.device),
                    position_ids=torch.arange(start, stop, device=self.base.device).unsqueeze(0),
                    cache=row.cache,
                    adapter_keys=[row.adapter_key],
                    every_position=scored is not None,
                )
                if scored is not None:
                    row.prompt_logprobs += prompt_logprobs(logits[0], prompt, start, stop, scored)
                    logits = logits[:, -1, :]
            except Exception:
                reference = _error_reference()
                log.exception("prefill failed [%s]", reference)
                self._prefilling.pop(0)
                self._finish(row, "error", f"Generation failed (error {reference}).")
                continue
            row.prefilled, budget = stop, budget - (stop - start)
            self.metrics.prompt_tokens.inc(stop - start)
            if stop < len(prompt):
                continue
            self._prefilling.pop(0)
            self._start_decoding(row, logits)

    def _start_decoding(self, first: Row, logits: torch.Tensor) -> None:
        """After a prefill: fork the request's rows, sample their first tokens (sent at once: the
        time to first token), store the prompt's blocks, and put the rows that go on into the
        running batch."""
        cache, prompt = first.cache, first.request.prompt_ids
        assert cache is not None
        first.cache = None
        if first.request.params.max_tokens == 0:  # only the prompt was asked for (echo)
            self.prefixes.store(first, cache)
            self._finish(first, "length")
            return
        rows = fork(first, self.base.tokenizer, self.base.eos_token_ids)
        for row in rows[1:]:
            self.adapters.acquire(first.request.adapter)  # resident: pinned by the first row
            row.pinned = True
        tokens = choose_tokens(logits.expand(len(rows), -1), rows, self._masks)
        going_on = [row for row, token in zip(rows, tokens, strict=True) if not self._accept(row, token)]
        self.prefixes.store(first, cache)  # before the batch's next step appends to the cache
        for row in going_on:
            self._kv.append_row(cache, len(prompt))
            self._rows.append(row)
        self.metrics.running.set(len(self._rows))

    def _decode_step(self) -> None:
        self._drop(lambda row: row.handle.cancelled, "cancelled")
        if not self._rows:
            return
        mask, positions = self._kv.step_inputs()
        assert self._kv.cache is not None  # rows are running
        ids = torch.tensor([[row.last_token] for row in self._rows], dtype=torch.long, device=self.base.device)
        logits = self._forward(
            ids,
            attention_mask=mask,
            position_ids=positions,
            cache=self._kv.cache,
            adapter_keys=[row.adapter_key for row in self._rows],
        )
        self.metrics.batch_size.observe(len(self._rows))
        tokens = choose_tokens(logits, self._rows, self._masks)
        for row, token in zip(self._rows, tokens, strict=True):
            self._accept(row, token)
        self._drop(lambda row: row.finished, None)

    @torch.inference_mode()
    def _forward(
        self,
        ids: torch.Tensor,
        *,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache,
        adapter_keys: list[str | None],
        every_position: bool = False,
    ) -> torch.Tensor:
        """Logits of the last position of every row ``[rows, vocab]`` (of every position,
        ``[rows, positions, vocab]``, with ``every_position``)."""
        self._lora.set_adapters(adapter_keys, self.adapters.weights, self.base.device)
        out = self.base.model(
            input_ids=ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=0 if every_position else 1,
            **{self._cache_kwarg: cache},
        )
        logits: torch.Tensor = out.logits if every_position else out.logits[:, -1, :]
        return logits

    def _accept(self, row: Row, token: int) -> bool:
        """Record a sampled token; emit text; finish the row when done. True if finished."""
        row.generated += 1
        row.last_token = token
        self.metrics.generated_tokens.inc()
        if token in self.base.eos_token_ids and not row.request.params.ignore_eos:
            if row.logprobs:
                row.logprobs.pop()  # the end of the text is not a token of it
            self._finish(row, "stop")
            return True
        if not row.logits.accept(token):  # a parser limit: the schema is too hard to follow
            reason = row.logits.error or "the token broke the grammar"
            self._finish(row, "error", f"The response format could not be followed ({reason}); simplify it.")
            return True
        piece = row.text.push(token)
        if piece:
            row.request.emit(TextDelta(piece, row.index, row.take_logprobs()))
        if row.text.stopped and row.logprobs:
            row.logprobs.pop()  # the token that completed a stop string: its text is cut, so is it
        if row.text.stopped or row.logits.finished:
            self._finish(row, "stop")
        elif row.generated >= row.request.params.max_tokens:
            self._finish(row, "length")
        return row.finished

    def _finish(self, row: Row, reason: str, error: str | None = None) -> None:
        if row.finished:
            return
        row.finished = True
        if reason in ("stop", "length"):
            tail = row.text.flush()
            if tail:
                row.request.emit(TextDelta(tail, row.index, row.take_logprobs()))
        if row.pinned:
            self.adapters.release(row.request.adapter)
        prompt = len(row.request.prompt_ids)
        scored = tuple(row.prompt_logprobs)
        row.request.emit(
            Finished(reason, prompt, row.generated, error, row.index, row.take_logprobs(), row.cached_tokens, scored)
        )
        for index in range(row.index + 1, row.index + row.choices):  # a request that never forked
            row.request.emit(Finished(reason, prompt, 0, error, index, (), row.cached_tokens))

    def _drop(self, predicate: Callable[[Row], bool], reason: str | None) -> None:
        keep = []
        for i, row in enumerate(self._rows):
            if not predicate(row):
                keep.append(i)
            elif reason is not None:
                self._finish(row, reason)
        if len(keep) == len(self._rows):
            return
        self._rows = [self._rows[i] for i in keep]
        self._kv.keep_rows(keep)
        self.metrics.running.set(len(self._rows))

    def _fail_all(self, message: str) -> None:
        for row in self._rows + self._prefilling:
            self._finish(row, "error", message)
        self._rows, self._prefilling = [], []
        self._kv = KVBatch()
        self.metrics.running.set(0)

    def _on_adapter_load(self, seconds: float) -> None:
        self.metrics.adapter_loads.inc()
        self.metrics.adapter_load_seconds.observe(seconds)


def _refuse(request: GenerationRequest, message: str) -> None:
    """End every choice of a request that never ran."""
    for index in range(request.n):
        request.emit(Finished("error", len(request.prompt_ids), 0, message, index))


def _error_reference() -> str:
    """A short id that ties an error a client sees to the log line with its details."""
    return uuid.uuid4().hex[:12]
