"""Bookkeeping of the paged KV cache: a pool of fixed-size blocks, per-request block tables, reference counts and
prefix caching.

A full block is keyed by `hash(parent block's hash, the block's tokens)`, so a key names the whole prefix up to
and including the block. A new request looks its prompt up block by block and shares every block that hits. A
block nobody references any more keeps its contents and its key (it is "evictable") and is reused for other data
only when the free list runs dry, least recently freed first. The tensors themselves live in the model runner;
this class deals in block ids only.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BlockHash", "KVCacheManager", "PrefixHit", "hash_block"]

BlockHash = bytes
"""The key of a full block: sha256 of (parent block's key, the block's token ids)."""


def hash_block(parent: BlockHash | None, tokens: Sequence[int]) -> BlockHash:
    """The key of a full block whose prefix before it has key `parent` (None for the first block)."""
    h = hashlib.sha256(parent or b"")
    h.update(array("q", tokens).tobytes())
    return h.digest()


@dataclass(frozen=True)
class PrefixHit:
    """The cached blocks found for a prompt of `num_queried` tokens: their ids, their keys, the tokens they hold."""

    blocks: tuple[int, ...]
    hashes: tuple[BlockHash, ...]
    num_tokens: int
    num_queried: int


class KVCacheManager:
    """Block pool with a free list, reference counts, per-request block tables and an LRU prefix cache."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need num_blocks >= 1 and block_size >= 1, not {num_blocks}, {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_count = [0] * num_blocks
        self.block_hash: list[BlockHash | None] = [None] * num_blocks
        self.cached: dict[BlockHash, int] = {}
        self.free_list: list[int] = list(range(num_blocks - 1, -1, -1))  # pop() hands out block 0 first
        self.evictable: OrderedDict[int, None] = OrderedDict()  # cached, unreferenced; oldest first
        self.tables: dict[str, list[int]] = {}
        self.hashes: dict[str, list[BlockHash]] = {}
        self.prefix_queries = 0
        """Prompt tokens looked up in the prefix cache."""
        self.prefix_hits = 0
        """Of those, tokens found cached."""
        self.evictions = 0
        """Cached blocks given over to other data."""

    # ------------------------------------------------------------ queries

    @property
    def num_free_blocks(self) -> int:
        """Blocks an allocation may take: never used, or cached but unreferenced."""
        return len(self.free_list) + len(self.evictable)

    @property
    def usage(self) -> float:
        """Share of the pool held by running requests."""
        return 1.0 - self.num_free_blocks / self.num_blocks

    def block_table(self, request_id: str) -> list[int]:
        """The blocks of a request, in order (a copy)."""
        return list(self.tables.get(request_id, ()))

    def blocks_needed(self, num_tokens: int) -> int:
        """Blocks that hold `num_tokens` tokens."""
        return -(-num_tokens // self.block_size)

    # ------------------------------------------------------------ prefix lookup

    def find_prefix(self, token_ids: Sequence[int]) -> PrefixHit:
        """The longest run of cached full blocks at the start of `token_ids`, leaving at least the last token to
        compute (its logits are needed). Counted as a query (and hits) when `allocate` takes it."""
        if not self.enable_prefix_caching:
            return PrefixHit((), (), 0, len(token_ids))
        blocks: list[int] = []
        hashes: list[BlockHash] = []
        parent: BlockHash | None = None
        bs = self.block_size
        for start in range(0, len(token_ids) - bs, bs):  # full blocks before the last token
            key = hash_block(parent, token_ids[start:start + bs])
            block = self.cached.get(key)
            if block is None:
                break
            blocks.append(block)
            hashes.append(key)
            parent = key
        return PrefixHit(tuple(blocks), tuple(hashes), len(blocks) * bs, len(token_ids))

    # ------------------------------------------------------------ allocation

    def allocate(self, request_id: str, num_tokens: int, prefix: PrefixHit | None = None) -> bool:
        """Make the request's blocks hold `num_tokens` tokens (a new request starts with the `prefix` blocks).
        False, and nothing changed, when the pool cannot give the blocks that are missing."""
        table = self.tables.get(request_id)
        shared = prefix.blocks if prefix is not None and table is None else ()
        have = len(table) if table is not None else len(shared)
        missing = max(0, self.blocks_needed(num_tokens) - have)
        reclaimed = sum(1 for b in shared if self.ref_count[b] == 0)  # evictable blocks this request takes back
        if missing > self.num_free_blocks - reclaimed:
            return False
        if table is None:
            table = self.tables[request_id] = []
            self.hashes[request_id] = list(prefix.hashes) if prefix is not None else []
            if prefix is not None:
                self.prefix_queries += prefix.num_queried
                self.prefix_hits += prefix.num_tokens
            for b in shared:
                if self.ref_count[b] == 0:
                    del self.evictable[b]
                self.ref_count[b] += 1
                table.append(b)
        for _ in range(missing):
            table.append(self._take_block())
        return True

    def _take_block(self) -> int:
        if self.free_list:
            block = self.free_list.pop()
        else:
            block, _ = self.evictable.popitem(last=False)
            key = self.block_hash[block]
            if key is not None and self.cached.get(key) == block:
                del self.cached[key]
            self.block_hash[block] = None
            self.evictions += 1
        self.ref_count[block] = 1
        return block

    def cache_blocks(self, request_id: str, token_ids: Sequence[int], num_computed: int) -> None:
        """Key and publish the request's full blocks whose `num_computed` first tokens (of `token_ids`) are in
        the cache. A block whose key is already published stays private (freed, not kept, when released)."""
        if not self.enable_prefix_caching or request_id not in self.tables:
            return
        table, hashes = self.tables[request_id], self.hashes[request_id]
        bs = self.block_size
        for i in range(len(hashes), min(num_computed // bs, len(table))):
            key = hash_block(hashes[-1] if hashes else None, token_ids[i * bs:(i + 1) * bs])
            hashes.append(key)
            block = table[i]
            if key not in self.cached:
                self.cached[key] = block
                self.block_hash[block] = key

    def free(self, request_id: str) -> None:
        """Release the request's blocks: cached ones become evictable (tail blocks evicted first), others free."""
        table = self.tables.pop(request_id, None)
        self.hashes.pop(request_id, None)
        for block in reversed(table or ()):
            self.ref_count[block] -= 1
            if self.ref_count[block] == 0:
                if self.block_hash[block] is not None:
                    self.evictable[block] = None
                else:
                    self.free_list.append(block)

    def reset_prefix_cache(self) -> None:
        """Forget every cached block that no request holds (for benchmarks and tests)."""
        for block in self.evictable:
            key = self.block_hash[block]
            if key is not None and self.cached.get(key) == block:
                del self.cached[key]
            self.block_hash[block] = None
            self.free_list.append(block)
        self.evictable.clear()
