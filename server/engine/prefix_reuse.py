"""How the engine uses the :class:`~server.engine.prefix_cache.PrefixCache`: keys, exclusions, metrics.

Contract: a row's key salt is its request's ``cache_salt`` plus its adapter version id (a LoRA
changes keys and values, so an adapter's prefixes are its own). :meth:`PrefixReuse.start` gives
a row the cache to prefill from, its ``prefilled`` moved past the reused tokens; a request that
scores its prompt (``prompt_logprobs``) reuses nothing, since it needs every position's logits.
:meth:`PrefixReuse.store` keeps a finished prefill's full blocks, and a long prompt's
keys and values whole as a run (:mod:`server.engine.prefix_runs`), which later hits on its
blocks copy from in one piece. Metrics: tokens looked up,
tokens reused (their ratio is the hit rate), bytes held. Off (``budget_bytes=0``): every
prefill starts empty.
"""

from __future__ import annotations

from transformers import DynamicCache

from server.engine.prefix_cache import PrefixCache
from server.engine.prefix_runs import PrefixRuns
from server.engine.rows import Row
from server.metrics import Metrics


class PrefixReuse:
    def __init__(self, budget_bytes: int, block_tokens: int, metrics: Metrics) -> None:
        self.cache = PrefixCache(budget_bytes, block_tokens) if budget_bytes else None
        self.runs = PrefixRuns(block_tokens)
        self._metrics = metrics

    @staticmethod
    def _salt(row: Row) -> str:
        return f"{row.request.cache_salt}|{row.adapter_key or 'base'}"

    def start(self, row: Row) -> DynamicCache:
        """The row's prompt cache, holding the longest cached prefix of its prompt."""
        if self.cache is None or row.request.params.prompt_logprobs is not None:
            return DynamicCache()
        prompt = row.request.prompt_ids
        hit = self.cache.lookup(self._salt(row), prompt)
        self._metrics.prefix_lookup_tokens.inc(len(prompt))
        if hit is None:
            return DynamicCache()
        self._metrics.prefix_hit_tokens.inc(hit.tokens)
        row.prefilled = row.cached_tokens = hit.tokens
        return self.runs.use(hit).to_cache()

    def store(self, row: Row, cache: DynamicCache) -> None:
        """Keep the full blocks of the row's prompt, now in ``cache``, and the run of them."""
        if self.cache is None:
            return
        salt, prompt = self._salt(row), row.request.prompt_ids
        self.cache.insert(salt, prompt, cache)
        self.runs.remember(self.cache.cached_chain(salt, prompt), cache)
        self._metrics.prefix_cache_bytes.set(self.cache.bytes_used)
