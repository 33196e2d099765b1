"""The prefix cache against a real (tiny, random, fp32) Llama: a prompt continued from cached blocks
gives the logits and greedy tokens of a full prefill, also from the first positions of a block
alone; salts and differing blocks isolate entries;
the byte budget holds with least recently used leaves evicted and no holes in a chain; stored
blocks are copies, counted to the byte."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, LlamaForCausalLM

from server.engine.prefix_cache import PrefixCache
from tests.conftest import tiny_llama_config

BLOCK = 16
SALT = "tenant-a|base"


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    config = tiny_llama_config()
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(torch.float32).eval()


def prompt(n: int, seed: int = 1) -> list[int]:
    return torch.randint(3, 256, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@torch.inference_mode()  # as the engine's forward passes
def forward(model: LlamaForCausalLM, ids: list[int], cache: DynamicCache, start: int = 0) -> torch.Tensor:
    """Logits of the last position after feeding ``ids`` at positions ``start``...; fills ``cache``."""
    stop = start + len(ids)
    out = model(
        input_ids=torch.tensor([ids]),
        attention_mask=torch.ones((1, stop), dtype=torch.long),
        position_ids=torch.arange(start, stop).unsqueeze(0),
        cache=cache,
        use_cache=True,
    )
    logits: torch.Tensor = out.logits[0, -1]
    return logits


def prefilled(model: LlamaForCausalLM, ids: list[int]) -> DynamicCache:
    cache = DynamicCache()
    forward(model, ids, cache)
    return cache


def greedy(model: LlamaForCausalLM, logits: torch.Tensor, cache: DynamicCache, length: int, n: int) -> list[int]:
    tokens = []
    for i in range(n):
        token = int(logits.argmax())
        tokens.append(token)
        logits = forward(model, [token], cache, length + i)
    return tokens


def stored_tensors(cache: PrefixCache) -> list[torch.Tensor]:
    return [t for block in cache._blocks.values() for t in (block.keys, block.values)]


def test_continuing_from_cached_blocks_matches_a_full_prefill(model: LlamaForCausalLM) -> None:
    ids = prompt(100)
    cache = PrefixCache(budget_bytes=1 << 30, block_tokens=BLOCK)
    assert cache.lookup(SALT, ids) is None
    assert cache.insert(SALT, ids, prefilled(model, ids)) == 6
    assert cache.blocks == 6
    assert cache.insert(SALT, ids, prefilled(model, ids)) == 0  # already there

    hit = cache.lookup(SALT, ids)
    assert hit is not None and hit.tokens == 96
    resumed = hit.to_cache()
    assert resumed.get_seq_length() == 96
    stored = [t.clone() for t in stored_tensors(cache)]
    logits = forward(model, ids[96:], resumed, start=96)
    assert resumed.get_seq_length() == 100  # the forward appended to the hit's positions
    assert all(torch.equal(a, b) for a, b in zip(stored, stored_tensors(cache), strict=True))  # blocks only read
    assert all(layer.keys.shape[-2] == 100 for layer in resumed.layers)

    full = DynamicCache()
    expected = forward(model, ids, full)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    assert greedy(model, logits, resumed, 100, 10) == greedy(model, expected, full, 100, 10)

    # Always one token left to compute (its logits are needed): a prompt of whole blocks reuses its
    # last block but for that token, from the block's first positions alone.
    whole = cache.lookup(SALT, ids[:96])
    assert whole is not None and whole.tokens == 95
    logits = forward(model, ids[95:96], whole.to_cache(), start=95)
    torch.testing.assert_close(logits, forward(model, ids[:96], DynamicCache()), atol=1e-5, rtol=0)
    one = cache.lookup(SALT, ids[:16])
    assert one is not None and one.tokens == 15
    hit17 = cache.lookup(SALT, ids[:17])
    assert hit17 is not None and hit17.tokens == 16
    assert (cache.lookups, cache.hit_tokens) == (100 + 100 + 96 + 16 + 17, 96 + 95 + 15 + 16)


def test_salts_and_differing_blocks_are_isolated(model: LlamaForCausalLM) -> None:
    ids = prompt(100)
    cache = PrefixCache(budget_bytes=1 << 30, block_tokens=BLOCK)
    cache.insert(SALT, ids, prefilled(model, ids))

    assert cache.lookup("tenant-b|base", ids) is None
    assert cache.lookup("tenant-a|acme/support@3", ids) is None
    first = list(ids)
    first[0] = (first[0] + 1) % 256
    assert cache.lookup(SALT, first) is None
    first[0], first[5] = ids[0], (first[5] + 1) % 256
    shared = cache.lookup(SALT, first)  # the first block's first five positions
    assert shared is not None and shared.tokens == 5
    third = list(ids)
    third[2 * BLOCK + 7] = (third[2 * BLOCK + 7] + 1) % 256  # block 3 differs from its 8th token
    hit = cache.lookup(SALT, third)
    assert hit is not None and hit.tokens == 2 * BLOCK + 7

    # The shared two blocks serve the diverging prompt exactly as a full prefill would.
    logits = forward(model, third[hit.tokens :], hit.to_cache(), start=hit.tokens)
    torch.testing.assert_close(logits, forward(model, third, DynamicCache()), atol=1e-5, rtol=0)
    # Inserting it stores only its own blocks (4 of 6), behind the shared ones.
    assert cache.insert(SALT, third, prefilled(model, third)) == 4
    assert cache.blocks == 10


def test_budget_evicts_least_recently_used_leaves(model: LlamaForCausalLM) -> None:
    a, b = prompt(2 * BLOCK + 1, seed=1), prompt(2 * BLOCK + 1, seed=2)
    block_bytes = PrefixCache(1 << 30, BLOCK)
    block_bytes.insert(SALT, a, prefilled(model, a))
    size = block_bytes.bytes_used // 2
    cache = PrefixCache(budget_bytes=3 * size + size // 2, block_tokens=BLOCK)

    assert cache.insert(SALT, a, prefilled(model, a)) == 2
    assert cache.insert(SALT, b, prefilled(model, b)) == 2  # evicts a's leaf, not a's first block
    assert (cache.blocks, cache.evictions) == (3, 1)
    assert cache.bytes_used <= cache.budget_bytes
    hit_a = cache.lookup(SALT, a)
    assert hit_a is not None and hit_a.tokens == BLOCK  # a keeps its root; no hole either way
    hit_b = cache.lookup(SALT, b)
    assert hit_b is not None and hit_b.tokens == 2 * BLOCK

    # Touch a (its root is now more recent than b's blocks); re-inserting a's second block evicts b's leaf.
    assert cache.lookup(SALT, a) is not None
    assert cache.insert(SALT, a, prefilled(model, a)) == 1
    assert (cache.blocks, cache.evictions) == (3, 2)
    assert cache.bytes_used <= cache.budget_bytes
    hit_b = cache.lookup(SALT, b)
    assert hit_b is not None and hit_b.tokens == BLOCK  # b's root stayed (never a chain with a hole)
    hit_a = cache.lookup(SALT, a)
    assert hit_a is not None and hit_a.tokens == 2 * BLOCK
    resumed = hit_a.to_cache()
    torch.testing.assert_close(
        forward(model, a[2 * BLOCK :], resumed, start=2 * BLOCK), forward(model, a, DynamicCache()), atol=1e-5, rtol=0
    )

    # A long prompt never evicts its own chain: it stores what fits behind it and stops.
    long = prompt(6 * BLOCK + 1, seed=3)
    assert cache.insert(SALT, long, prefilled(model, long)) == 3
    assert cache.blocks == 3 and cache.bytes_used <= cache.budget_bytes
    hit = cache.lookup(SALT, long)
    assert hit is not None and hit.tokens == 3 * BLOCK
    assert cache.lookup(SALT, a) is None and cache.lookup(SALT, b) is None
    assert sorted(d for after in cache._next.values() for d in after) == sorted(cache._blocks)  # nothing stale


def test_a_lookup_makes_its_blocks_recently_used(model: LlamaForCausalLM) -> None:
    a, b, c = prompt(2 * BLOCK + 1, seed=1), prompt(2 * BLOCK + 1, seed=2), prompt(BLOCK + 1, seed=4)
    probe = PrefixCache(1 << 30, BLOCK)
    probe.insert(SALT, c, prefilled(model, c))
    cache = PrefixCache(budget_bytes=4 * probe.bytes_used + probe.bytes_used // 2, block_tokens=BLOCK)
    cache.insert(SALT, a, prefilled(model, a))
    cache.insert(SALT, b, prefilled(model, b))  # a is now the least recently used
    assert cache.lookup(SALT, a) is not None  # ... and now b is
    assert cache.insert(SALT, c, prefilled(model, c)) == 1
    assert cache.evictions == 1
    hit_a, hit_b = cache.lookup(SALT, a), cache.lookup(SALT, b)
    assert hit_a is not None and hit_a.tokens == 2 * BLOCK
    assert hit_b is not None and hit_b.tokens == BLOCK  # b lost its leaf, kept its first block


def test_a_block_bigger_than_the_budget_is_not_stored(model: LlamaForCausalLM) -> None:
    ids = prompt(40)
    cache = PrefixCache(budget_bytes=1000, block_tokens=BLOCK)  # a block is 2 layers x 2 x 2x16x16 x 4 B
    assert cache.insert(SALT, ids, prefilled(model, ids)) == 0
    assert (cache.blocks, cache.bytes_used, cache.evictions) == (0, 0, 0)
    assert cache.lookup(SALT, ids) is None
    assert cache.insert(SALT, ids[:10], prefilled(model, ids[:10])) == 0  # no full block at all


def test_blocks_are_copies_counted_to_the_byte(model: LlamaForCausalLM) -> None:
    ids = prompt(70)
    source = prefilled(model, ids)
    cache = PrefixCache(budget_bytes=1 << 30, block_tokens=BLOCK)
    assert cache.insert(SALT, ids, source) == 4
    tensors = stored_tensors(cache)
    assert cache.bytes_used == sum(t.nbytes for t in tensors)
    assert tensors[0].shape == (2, 2, BLOCK, 16)  # [layers, kv_heads, block, head_dim]
    sources = {t.untyped_storage().data_ptr() for layer in source.layers for t in (layer.keys, layer.values)}
    assert sources.isdisjoint(t.untyped_storage().data_ptr() for t in tensors)
    assert len({t.untyped_storage().data_ptr() for t in tensors}) == len(tensors)
    hit = cache.lookup(SALT, ids)
    assert hit is not None and hit.tokens == 64
    layer1_keys, layer0_values = hit.pieces[1][0], hit.pieces[0][1]  # per layer, per block
    torch.testing.assert_close(layer1_keys[2], source.layers[1].keys[:, :, 2 * BLOCK : 3 * BLOCK], atol=0, rtol=0)
    torch.testing.assert_close(layer0_values[3], source.layers[0].values[:, :, 3 * BLOCK : 4 * BLOCK], atol=0, rtol=0)

    # The hit's cache is its own too: a forward on it leaves the stored blocks as they were.
    before = [t.clone() for t in tensors]
    forward(model, ids[hit.tokens :], hit.to_cache(), start=hit.tokens)
    for t, old in zip(stored_tensors(cache), before):
        torch.testing.assert_close(t, old, atol=0, rtol=0)
    cache.clear()
    assert (cache.blocks, cache.bytes_used) == (0, 0)
    assert cache.lookup(SALT, ids) is None


def test_a_cache_that_does_not_cover_the_prompt_is_refused(model: LlamaForCausalLM) -> None:
    ids = prompt(40)
    cache = PrefixCache(budget_bytes=1 << 30, block_tokens=BLOCK)
    with pytest.raises(ValueError):
        cache.insert(SALT, ids, prefilled(model, ids[:20]))
    assert cache.blocks == 0
