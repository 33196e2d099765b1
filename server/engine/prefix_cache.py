"""Computed keys and values of prompt prefixes, kept in fixed-size token blocks for reuse.

Contract:
- A block holds ``block_tokens`` consecutive prompt positions of every layer: its keys as one
  tensor ``[layers, kv_heads, block_tokens, head_dim]`` and its values likewise (2 tensors a block).
- A block is keyed by a chained hash: blake2b-128 over (parent block's digest, the salt on the
  first block, this block's token ids), so a block is found only behind the very same prefix and
  salt. The engine's salt is the adapter version plus an isolation salt (``"tenant-a|acme/support@3"``,
  ``"tenant-a|base"``): a LoRA changes k and v, and tenants share entries only where salts match.
- :meth:`PrefixCache.lookup` returns the longest run of cached full blocks from position 0, then
  the first positions of the cached block after that run sharing the most tokens with the prompt
  (token-granular reuse of the last block, as in SGLang's radix cache: a shared prefix that ends
  inside a block, like a tenant's passages before each new question, is reused whole), always
  leaving at least one prompt token uncached (the engine needs the last prompt token's logits);
  :meth:`PrefixHit.to_cache` turns it into a fresh batch-1 ``DynamicCache`` to prefill on from,
  whose layers copy the blocks once, together with the first new positions.
- :meth:`PrefixCache.insert` stores a prefilled prompt's full blocks (copies, never views), within
  a byte budget, evicting least recently used leaf blocks (see :meth:`PrefixCache._evict_one`).
- Owned by the engine's single worker thread, the only caller: no locks, no threads of its own.
  Pure torch; no HTTP.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import CacheLayerMixin

from server.engine.prefix_layer import Pieces, prefix_cache


@dataclass(frozen=True, eq=False)
class PrefixHit:
    """Cached blocks covering a prompt's first ``tokens`` tokens."""

    tokens: int
    pieces: tuple[tuple[Pieces, Pieces], ...] = field(repr=False)
    """Per layer, its ``[1, kv_heads, n, head_dim]`` views of the blocks (keys, values), one a
    block in prompt order (the last a partial block's first positions, if any)."""
    chain: tuple[bytes, ...] = ()
    """The digests of its full blocks, in prompt order (``pieces`` holds them first, one each)."""

    def to_cache(self) -> DynamicCache:
        """A fresh batch-1 cache holding positions ``[0, tokens)``; prefill on from ``tokens``.

        Its layers read the blocks and copy them, with the new positions, on their first update
        (:mod:`server.engine.prefix_layer`): evicting the blocks later does not touch it."""
        return prefix_cache(self.pieces)


@dataclass
class _Block:
    keys: torch.Tensor
    values: torch.Tensor
    parent: bytes | None
    """Digest of the block before this one in the prompt (None: the first block)."""
    anchor: bytes
    """The parent's digest, or the salt's root digest for a first block: where lookups find it."""
    ids: tuple[int, ...]
    """Its token ids, for reusing the first positions of the block alone."""
    children: int = 0
    """Cached blocks whose parent this is; only blocks with none are evicted."""
    layers: list[tuple[torch.Tensor, torch.Tensor]] = field(init=False, repr=False)
    """Per layer, ``[1, kv_heads, block_tokens, head_dim]`` views of keys and values (made once,
    so a lookup lists them without a tensor operation)."""

    def __post_init__(self) -> None:
        self.layers = [(k.unsqueeze(0), v.unsqueeze(0)) for k, v in zip(self.keys, self.values, strict=True)]

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes


class PrefixCache:
    """Prompt-prefix KV blocks under a byte budget, least recently used leaves evicted first."""

    def __init__(self, budget_bytes: int, block_tokens: int = 32) -> None:
        if block_tokens < 1:
            raise ValueError("block_tokens must be at least 1")
        self._budget = budget_bytes
        self.block_tokens = block_tokens
        # Least recently used first. Order invariant: every block is more recently used than each of
        # its cached descendants (lookup and insert touch a chain deepest block first, root last),
        # so the front of the order is a leaf.
        self._blocks: OrderedDict[bytes, _Block] = OrderedDict()
        self._next: dict[bytes, dict[bytes, None]] = {}
        """Anchor -> digests of the cached blocks right after it (an ordered set)."""
        self._bytes = 0
        # Counters for metrics (monotonic; clear() keeps them).
        self.lookups = 0
        """Prompt tokens looked up."""
        self.hit_tokens = 0
        """Prompt tokens served from the cache."""
        self.evictions = 0
        """Blocks evicted to make room (not counting clear())."""

    @property
    def budget_bytes(self) -> int:
        return self._budget

    @property
    def bytes_used(self) -> int:
        return self._bytes

    @property
    def blocks(self) -> int:
        return len(self._blocks)

    def clear(self) -> None:
        """Drop every block (counters are kept)."""
        self._blocks.clear()
        self._next.clear()
        self._bytes = 0

    def _digest(self, parent: bytes | None, salt: str, ids: list[int]) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        if parent is None:
            encoded = salt.encode()
            h.update(b"\x00" + len(encoded).to_bytes(8, "little") + encoded)  # length: no salt/ids ambiguity
        else:
            h.update(b"\x01" + parent)
        h.update(array("q", ids).tobytes())
        return h.digest()

    def _chain(self, salt: str, prompt_ids: list[int], n_blocks: int) -> list[bytes]:
        """Digests of the first ``n_blocks`` blocks of the prompt, stopping at the first one not cached."""
        found: list[bytes] = []
        parent = None
        for i in range(n_blocks):
            digest = self._digest(parent, salt, prompt_ids[i * self.block_tokens : (i + 1) * self.block_tokens])
            if digest not in self._blocks:
                break
            found.append(digest)
            parent = digest
        return found

    def cached_chain(self, salt: str, prompt_ids: list[int]) -> list[bytes]:
        """Digests of the prompt's full blocks from position 0, up to the first one not cached."""
        return self._chain(salt, prompt_ids, len(prompt_ids) // self.block_tokens)

    def _touch(self, chain: list[bytes]) -> None:
        """Mark a chain used, deepest block first so ancestors stay more recent than descendants."""
        for digest in reversed(chain):
            self._blocks.move_to_end(digest)

    def _root(self, salt: str) -> bytes:
        """The anchor of a salt's first blocks (no block has this digest: blocks are never empty)."""
        return self._digest(None, salt, [])

    def _partial(self, anchor: bytes, rest: list[int]) -> tuple[bytes, int] | None:
        """The cached block after ``anchor`` whose first tokens match most of ``rest``, and how many
        do. Scans the anchor's next blocks: as many as the byte budget holds, at worst."""
        best: tuple[bytes, int] | None = None
        for digest in self._next.get(anchor, {}):
            ids = self._blocks[digest].ids
            if not rest or ids[0] != rest[0]:
                continue
            common = next((i for i, (a, b) in enumerate(zip(ids, rest)) if a != b), min(len(ids), len(rest)))
            if best is None or common > best[1]:
                best = (digest, common)
        return best

    def lookup(self, salt: str, prompt_ids: list[int]) -> PrefixHit | None:
        """The longest cached run of full blocks from position 0 and the best partial block after
        it, leaving at least one prompt token to compute; touches the blocks it returns.
        O(blocks in the prompt + blocks cached after the run's end). None on no hit."""
        self.lookups += len(prompt_ids)
        limit = len(prompt_ids) - 1
        chain = self._chain(salt, prompt_ids, max(0, limit // self.block_tokens))
        tokens = len(chain) * self.block_tokens
        partial = self._partial(chain[-1] if chain else self._root(salt), prompt_ids[tokens:limit])
        if not chain and partial is None:
            return None
        per_block = [self._blocks[d].layers for d in chain]
        if partial is not None:
            digest, common = partial
            per_block.append([(k[:, :, :common], v[:, :, :common]) for k, v in self._blocks[digest].layers])
            tokens += common
        self._touch([*chain, *([partial[0]] if partial else [])])
        self.hit_tokens += tokens
        pieces = tuple(
            ([block[layer][0] for block in per_block], [block[layer][1] for block in per_block])
            for layer in range(len(per_block[0]))
        )
        return PrefixHit(tokens, pieces, tuple(chain))

    def insert(self, salt: str, prompt_ids: list[int], cache: DynamicCache) -> int:
        """Store every full block of ``prompt_ids`` not cached yet, copied out of ``cache`` (a batch-1
        cache holding at least those positions, unpadded). Evicts least recently used leaves to stay
        within the budget, never a block of this prompt; stops at the first block that does not fit
        (a block beyond it would be unreachable). Returns the number of blocks newly stored."""
        n_full = len(prompt_ids) // self.block_tokens
        if n_full == 0:
            return 0
        layers = _layers(cache, n_full * self.block_tokens)
        block_bytes = self.block_tokens * sum(k[0, :, 0].nbytes + v[0, :, 0].nbytes for k, v in layers)
        chain = self._chain(salt, prompt_ids, n_full)
        self._touch(chain)
        protected = set(chain)
        protected_bytes = sum(self._blocks[d].nbytes for d in chain)
        parent = chain[-1] if chain else None
        stored = 0
        for i in range(len(chain), n_full):
            start, stop = i * self.block_tokens, (i + 1) * self.block_tokens
            # Every unprotected block can go (leaf by leaf), so this fits iff it fits next to the chain.
            if protected_bytes + block_bytes > self._budget:
                break
            while self._bytes + block_bytes > self._budget:
                self._evict_one(protected)
            with torch.no_grad():  # stack copies: the block owns its storage, not a view of the prompt's
                block = _Block(
                    torch.stack([k[0, :, start:stop] for k, _ in layers]),
                    torch.stack([v[0, :, start:stop] for _, v in layers]),
                    parent,
                    parent if parent is not None else self._root(salt),
                    tuple(prompt_ids[start:stop]),
                )
            digest = self._digest(parent, salt, prompt_ids[start:stop])
            self._blocks[digest] = block
            self._next.setdefault(block.anchor, {})[digest] = None
            self._bytes += block.nbytes
            if parent is not None:
                self._blocks[parent].children += 1
            protected.add(digest)
            protected_bytes += block.nbytes
            chain.append(digest)
            parent = digest
            stored += 1
        self._touch(chain)  # restore the order invariant over the whole chain, new blocks included
        return stored

    def _evict_one(self, protected: set[bytes]) -> None:
        """Evict the least recently used leaf outside ``protected`` (the caller knows there is one).

        Leaves only (the policy of vLLM's and SGLang's radix caches) rather than cascading: evicting
        an inner block alone would strand its descendants (unreachable, yet holding bytes), and a
        cascade frees a whole subtree where one block's bytes were wanted. Leaf by leaf, a cached
        chain never has a hole, and a prefix many prompts share (a tenant's system prompt) goes only
        after every conversation cached behind it. The ``children`` check is a safety net: by the
        order invariant the first unprotected block is already a leaf, so the scan stops at once."""
        digest, block = next((d, b) for d, b in self._blocks.items() if b.children == 0 and d not in protected)
        del self._blocks[digest]
        following = self._next[block.anchor]
        del following[digest]
        if not following:
            del self._next[block.anchor]
        self._bytes -= block.nbytes
        if block.parent is not None:
            self._blocks[block.parent].children -= 1
        self.evictions += 1


def _layers(cache: DynamicCache, positions: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's keys and values, checked to be one row covering ``positions`` positions."""
    pairs = []
    for layer in cache.layers:
        assert isinstance(layer, CacheLayerMixin)
        keys, values = layer.keys, layer.values
        if keys is None or values is None or getattr(layer, "is_sliding", False):
            raise ValueError("the cache must be a filled cache of full-attention layers")
        if keys.shape[0] != 1 or keys.shape[2] < positions:
            raise ValueError(f"need a batch-1 cache of at least {positions} positions, got {tuple(keys.shape)}")
        pairs.append((keys, values))
    if not pairs:
        raise ValueError("the cache has no layers")
    return pairs
