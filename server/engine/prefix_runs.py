"""Recent prefills' keys and values kept whole, so a hit on a long cached prefix copies one piece
per layer instead of one per block.

Contract:

- :meth:`PrefixRuns.remember` is called after a prefill with the digests of the prompt's cached
  full blocks (:meth:`~server.engine.prefix_cache.PrefixCache.cached_chain`, in prompt order) and
  the prefill's cache, whose first ``len(chain) * block_tokens`` positions hold those blocks'
  keys and values. A chain of at least :data:`MIN_BLOCKS` blocks is kept as a *run*: per layer a
  view of those positions, no copy (the engine never writes a cache tensor in place: every step
  makes new ones, so the view stays as it was). At most ``limit`` runs, least recently used
  dropped; a chain already kept, or covered by a longer kept one, is not kept again.
- :meth:`PrefixRuns.use` gives a :class:`~server.engine.prefix_cache.PrefixHit` whose first
  blocks a run covers (the run's digest at the chain's position matches: digests are chained, so
  every block before it matches too) one view of the run per layer in place of those blocks'
  pieces; otherwise the hit as it was. Same values either way: a run and the blocks were copied
  from the same prefill's tensors, or the run's positions from the blocks themselves.
- Memory: a run keeps its prefill's cache tensors alive, outside the prefix cache's byte budget:
  at most ``limit`` prompts' keys and values (:data:`DEFAULT_LIMIT`: a few MB each for the
  embedded model). Owned by the engine's worker thread, like the prefix cache.

Why: a hit's blocks are copied into the request's cache per layer (:mod:`server.engine.prefix_layer`);
from 45 blocks of 16 tokens (a tenant's passages) the 30 layers' updates took ~6 ms of a grounded
question's ~60-70 ms to first token (engine alone, 2-core CPU), from one run ~1.7 ms.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
from transformers import DynamicCache
from transformers.cache_utils import CacheLayerMixin

from server.engine.prefix_cache import PrefixHit

MIN_BLOCKS = 8
DEFAULT_LIMIT = 4


@dataclass(frozen=True, eq=False)
class _Run:
    chain: tuple[bytes, ...]
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    """Per layer, ``[1, kv_heads, len(chain) * block_tokens, head_dim]`` views (keys, values)."""


class PrefixRuns:
    def __init__(self, block_tokens: int, limit: int = DEFAULT_LIMIT) -> None:
        self.block_tokens = block_tokens
        self.limit = limit
        self._runs: OrderedDict[bytes, _Run] = OrderedDict()
        """Keyed by the run's last digest; least recently used first."""

    def __len__(self) -> int:
        return len(self._runs)

    def _best(self, chain: tuple[bytes, ...] | list[bytes]) -> tuple[_Run, int] | None:
        """The kept run covering the most leading blocks of ``chain``, and how many it covers."""
        best: tuple[_Run, int] | None = None
        for run in self._runs.values():
            covered = min(len(run.chain), len(chain))
            if covered and run.chain[covered - 1] == chain[covered - 1] and (best is None or covered > best[1]):
                best = (run, covered)
        return best

    def remember(self, chain: list[bytes], cache: DynamicCache) -> None:
        if len(chain) < MIN_BLOCKS or self.limit <= 0:
            return
        known = self._best(chain)
        if known is not None and known[1] == len(chain):
            self._runs.move_to_end(known[0].chain[-1])
            return
        positions = len(chain) * self.block_tokens
        layers = []
        for layer in cache.layers:
            if not isinstance(layer, CacheLayerMixin) or getattr(layer, "is_sliding", False):
                return
            keys, values = layer.keys, layer.values
            if keys is None or values is None or keys.shape[0] != 1 or keys.shape[-2] < positions:
                return  # not a filled batch-1 cache of those positions: nothing to keep
            layers.append((keys[:, :, :positions], values[:, :, :positions]))
        self._runs[chain[-1]] = _Run(tuple(chain), tuple(layers))
        while len(self._runs) > self.limit:
            self._runs.popitem(last=False)

    def use(self, hit: PrefixHit) -> PrefixHit:
        found = self._best(hit.chain)
        if found is None:
            return hit
        run, covered = found
        self._runs.move_to_end(run.chain[-1])
        positions = covered * self.block_tokens
        pieces = tuple(
            ([run_keys[:, :, :positions], *keys[covered:]], [run_values[:, :, :positions], *values[covered:]])
            for (run_keys, run_values), (keys, values) in zip(run.layers, hit.pieces, strict=True)
        )
        return replace(hit, pieces=pieces)
