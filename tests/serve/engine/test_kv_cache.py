"""KVCacheManager: allocation, reference counts, hash chaining, prefix hits and LRU eviction (no model)."""

from __future__ import annotations

from infopt.serve.engine import KVCacheManager, hash_block

BS = 4


def _full(kv: KVCacheManager, request_id: str, tokens: list[int]) -> None:
    """Allocate and "compute" a whole request, its prefix taken from the cache."""
    assert kv.allocate(request_id, len(tokens), kv.find_prefix(tokens))
    kv.cache_blocks(request_id, tokens, len(tokens))


def test_allocate_grows_a_table_and_free_returns_blocks() -> None:
    kv = KVCacheManager(num_blocks=8, block_size=BS)
    assert kv.allocate("a", 5)
    assert len(kv.block_table("a")) == 2 and kv.num_free_blocks == 6
    assert kv.allocate("a", 8) and len(kv.block_table("a")) == 2  # still fits
    assert kv.allocate("a", 9) and len(kv.block_table("a")) == 3
    assert kv.usage == 3 / 8
    kv.free("a")
    assert kv.num_free_blocks == 8 and kv.block_table("a") == []


def test_a_failed_allocation_changes_nothing() -> None:
    kv = KVCacheManager(num_blocks=3, block_size=BS)
    assert kv.allocate("a", 8)
    table = kv.block_table("a")
    assert not kv.allocate("b", 8)
    assert not kv.allocate("a", 20)
    assert kv.block_table("a") == table and kv.block_table("b") == [] and kv.num_free_blocks == 1


def test_hashes_chain_over_the_prefix() -> None:
    a = hash_block(None, [1, 2, 3, 4])
    assert hash_block(None, [1, 2, 3, 4]) == a
    assert hash_block(a, [5, 6, 7, 8]) != hash_block(None, [5, 6, 7, 8])  # same tokens, other prefix
    assert hash_block(a, [5, 6, 7, 8]) != hash_block(hash_block(None, [1, 2, 3, 5]), [5, 6, 7, 8])


def test_prefix_hits_share_blocks_and_count_references() -> None:
    kv = KVCacheManager(num_blocks=16, block_size=BS)
    prompt = list(range(10))  # two full blocks and 2 tokens
    _full(kv, "a", prompt)
    hit = kv.find_prefix([*prompt, 99, 98])
    assert hit.num_tokens == 8 and hit.blocks == tuple(kv.block_table("a")[:2])
    assert kv.allocate("b", 12, hit)
    assert kv.block_table("b")[:2] == kv.block_table("a")[:2]
    assert [kv.ref_count[b] for b in kv.block_table("b")] == [2, 2, 1]
    assert (kv.prefix_queries, kv.prefix_hits) == (10 + 12, 8)
    kv.free("a")
    assert [kv.ref_count[b] for b in kv.block_table("b")] == [1, 1, 1]
    kv.free("b")
    assert kv.num_free_blocks == 16 and all(r == 0 for r in kv.ref_count)
    assert kv.find_prefix(prompt).num_tokens == 8  # unreferenced blocks stay cached


def test_the_last_token_is_always_computed() -> None:
    kv = KVCacheManager(num_blocks=16, block_size=BS)
    prompt = list(range(8))  # exactly two blocks
    _full(kv, "a", prompt)
    kv.free("a")
    assert kv.find_prefix(prompt).num_tokens == 4  # the second block holds the last token: recomputed
    assert kv.find_prefix([*prompt, 1]).num_tokens == 8


def test_a_miss_ends_the_prefix() -> None:
    kv = KVCacheManager(num_blocks=16, block_size=BS)
    _full(kv, "a", list(range(13)))
    assert kv.find_prefix([0, 1, 2, 3, 9, 9, 9, 9, 8, 9, 10, 11, 12]).num_tokens == 4
    assert kv.find_prefix([5, 1, 2, 3, 4, 5, 6, 7, 8]).num_tokens == 0


def test_duplicate_blocks_stay_private_and_are_freed() -> None:
    kv = KVCacheManager(num_blocks=8, block_size=BS)
    prompt = list(range(9))
    assert kv.allocate("a", 9) and kv.allocate("b", 9)  # no lookup: both compute the same blocks
    kv.cache_blocks("a", prompt, 9)
    kv.cache_blocks("b", prompt, 9)
    kv.free("b")
    assert len(kv.free_list) == 8 - 3  # b's blocks carry no key: back on the free list
    kv.free("a")
    assert len(kv.evictable) == 2


def test_eviction_is_lru_and_tail_blocks_go_first() -> None:
    kv = KVCacheManager(num_blocks=4, block_size=BS)
    old, new = [1, 2, 3, 4, 5, 6, 7, 8, 0], [9, 10, 11, 12, 13, 14, 15, 16, 0]
    _full(kv, "old", old[:8])  # two cached blocks
    kv.free("old")
    _full(kv, "new", new)  # the two free blocks, then one evicted: old's tail (tokens 5..8), freed first
    assert kv.evictions == 1
    assert kv.find_prefix(old).num_tokens == 4  # old's first block survived
    kv.free("new")
    assert kv.allocate("y", 8)  # new's partial block, then the least recently freed: old's first block
    assert kv.evictions == 2 and kv.find_prefix(old).num_tokens == 0 and kv.find_prefix(new).num_tokens == 8
    kv.free("y")
    assert kv.allocate("x", 16)  # every block: evicts the rest
    assert kv.evictions == 4 and not kv.cached
    assert kv.find_prefix(old).num_tokens == 0 and kv.find_prefix(new).num_tokens == 0


def test_a_hit_on_an_evictable_block_takes_it_back() -> None:
    kv = KVCacheManager(num_blocks=3, block_size=BS)
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    _full(kv, "a", prompt)
    kv.free("a")
    assert kv.num_free_blocks == 3
    hit = kv.find_prefix(prompt)
    assert kv.allocate("b", 9, hit)  # two blocks back from the cache, one more
    assert kv.num_free_blocks == 0 and kv.evictions == 0
    assert not kv.allocate("c", 1)


def test_prefix_caching_off_finds_nothing() -> None:
    kv = KVCacheManager(num_blocks=8, block_size=BS, enable_prefix_caching=False)
    _full(kv, "a", list(range(12)))
    kv.free("a")
    assert kv.find_prefix(list(range(12))).num_tokens == 0 and not kv.cached
    assert kv.num_free_blocks == 8


def test_reset_forgets_unreferenced_blocks() -> None:
    kv = KVCacheManager(num_blocks=8, block_size=BS)
    _full(kv, "a", list(range(9)))
    _full(kv, "b", list(range(20, 29)))
    kv.free("a")
    kv.reset_prefix_cache()
    assert kv.find_prefix(list(range(9))).num_tokens == 0
    assert kv.find_prefix(list(range(20, 29))).num_tokens == 8  # still held by b
