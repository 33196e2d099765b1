"""Prefix runs against a real (tiny, random, fp32) Llama: a hit served from a run gives the logits
of a full prefill, also after the run's prefill went on decoding; a run covers the leading blocks
of longer and shorter prompts, never another prompt's or salt's; short chains are not kept; at
most ``limit`` runs."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from server.engine.prefix_cache import PrefixCache
from server.engine.prefix_runs import MIN_BLOCKS, PrefixRuns
from tests.server.test_prefix_cache import BLOCK, SALT, forward, greedy, model, prompt  # noqa: F401  (model: fixture)

LONG = (MIN_BLOCKS + 2) * BLOCK + 5


def stored(model, ids: list[int], cache: PrefixCache, runs: PrefixRuns, salt: str = SALT) -> DynamicCache:
    """Prefill ``ids`` as the engine does (from the cache's hit, through the runs), then store it."""
    hit = cache.lookup(salt, ids)
    start = hit.tokens if hit else 0
    kv = runs.use(hit).to_cache() if hit else DynamicCache()
    forward(model, ids[start:], kv, start=start)
    cache.insert(salt, ids, kv)
    runs.remember(cache.cached_chain(salt, ids), kv)
    return kv


def test_a_hit_from_a_run_matches_a_full_prefill_even_after_decoding(model) -> None:
    cache, runs = PrefixCache(1 << 30, BLOCK), PrefixRuns(BLOCK)
    ids = prompt(LONG)
    kv = stored(model, ids, cache, runs)
    assert len(runs) == 1
    greedy(model, forward(model, ids[-1:], kv, start=len(ids) - 1), kv, len(ids), 5)  # the row decodes on

    longer = ids + prompt(20, seed=7)
    hit = cache.lookup(SALT, longer)
    assert hit is not None and hit.tokens == (len(ids) // BLOCK) * BLOCK
    from_run = runs.use(hit)
    assert from_run is not hit and all(len(keys) == 1 for keys, _ in from_run.pieces)  # one piece a layer
    logits = forward(model, longer[hit.tokens :], from_run.to_cache(), start=hit.tokens)
    torch.testing.assert_close(logits, forward(model, longer, DynamicCache()), atol=1e-5, rtol=0)

    shorter = ids[: (MIN_BLOCKS + 1) * BLOCK] + prompt(3, seed=8)  # a run's first blocks, then other words
    hit = cache.lookup(SALT, shorter)
    assert hit is not None and len(hit.chain) == MIN_BLOCKS + 1
    logits = forward(model, shorter[hit.tokens :], runs.use(hit).to_cache(), start=hit.tokens)
    torch.testing.assert_close(logits, forward(model, shorter, DynamicCache()), atol=1e-5, rtol=0)


def test_runs_are_per_chain_bounded_and_only_for_long_prompts(model) -> None:
    cache, runs = PrefixCache(1 << 30, BLOCK), PrefixRuns(BLOCK, limit=2)
    stored(model, prompt((MIN_BLOCKS - 1) * BLOCK + 3), cache, runs)
    assert len(runs) == 0  # too short to be worth keeping
    first = prompt(LONG, seed=2)
    stored(model, first, cache, runs)
    stored(model, first, cache, runs)  # the same chain again: still one run
    assert len(runs) == 1

    assert cache.lookup("tenant-b|base", first) is None  # another salt has no blocks, so no run either
    stored(model, first, cache, runs, salt="tenant-b|base")  # the same tokens under another salt: a run of its own
    assert len(runs) == 2
    stored(model, prompt(LONG, seed=4), cache, runs)
    assert len(runs) == 2  # the limit: the least recently used went
    hit = cache.lookup(SALT, first)
    assert hit is not None and runs.use(hit) is hit  # first's run was dropped: its blocks serve it
