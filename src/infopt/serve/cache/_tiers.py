"""What every cache tier shares: the request it is asked about, the hit it answers, its stats, and `CacheTier`
(get / put over a `Backend`, tenant scopes, TTL, invalidation by model fingerprint and tag, purge).

A tier never raises to its caller for anything a backend does: a failed, corrupt or foreign entry is a miss.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infopt.serve.cache._backends import Backend
from infopt.serve.cache._keys import GENERATIVE, SHARED_SCOPE, deterministic, scope_of
from infopt.serve.cache._store import CorruptEntry, Entry

__all__ = ["CacheHit", "CacheRequest", "CacheTier", "TierStats", "read_tiers"]


@dataclass(frozen=True)
class CacheRequest:
    """One request as the caches see it: the `endpoint` path, the `body` with its defaults filled in (e.g.
    `model_dump()`), the served model's `fingerprint`, and the `tenant` (None: the anonymous tenant)."""

    endpoint: str
    body: Mapping[str, Any]
    fingerprint: str
    tenant: str | None = None
    keys: dict[tuple[object, str], str | None] = field(default_factory=dict, init=False, compare=False, repr=False)
    """Each tier's key of this request by (the tier, scope), computed once (the lookup and the put after it share them;
    `dataclasses.replace` starts a new one)."""


@dataclass(frozen=True)
class CacheHit:
    """A cached answer: `response` (as it was put), the tier and key, when it was made, its age, the model time
    it saved, and whether it came from the shared scope."""

    response: Any
    tier: str
    key: str
    created: float
    age_s: float
    model_s: float
    shared: bool


@dataclass
class TierStats:
    """Counters of one tier (since start): `skipped` are requests the tier does not cache (endpoint, or a
    nondeterministic generation); `dropped` are puts no backend took; `saved_s` the model time hits avoided."""

    lookups: int = 0
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    skipped: int = 0
    puts: int = 0
    dropped: int = 0
    saved_s: float = 0.0
    lookup_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in ("lookups", "hits", "misses", "corrupt", "skipped",
                                                             "puts", "dropped")}
        out["hit_rate"] = self.hits / self.lookups if self.lookups else 0.0
        out["saved_s"] = round(self.saved_s, 6)
        out["mean_lookup_ms"] = round(1000 * self.lookup_s / self.lookups, 3) if self.lookups else 0.0
        return out


class CacheTier:
    """A cache tier over `backend`: subclasses say which requests it caches and their key (`key`)."""

    tier = "tier"

    def __init__(self, backend: Backend, *, ttl_s: float | None = 3600.0, cache_nondeterministic: bool = False,
                 shared_by_default: bool = False) -> None:
        self.backend = backend
        self.ttl_s = ttl_s
        self.cache_nondeterministic = cache_nondeterministic
        self.shared_by_default = shared_by_default
        self.counts = TierStats()

    def key(self, request: CacheRequest, scope: str) -> str | None:
        """The key of `request` in `scope`, or None when this tier does not cache its endpoint."""
        raise NotImplementedError

    def key_of(self, request: CacheRequest, scope: str) -> str | None:
        """`key`, remembered on the request."""
        memo = (self, scope)  # the tier object, not its name: two semantic tiers may cache other endpoints
        if memo not in request.keys:
            request.keys[memo] = self.key(request, scope)
        return request.keys[memo]

    def cacheable(self, request: CacheRequest) -> bool:
        """Whether this tier caches `request`: a known endpoint, and (generations) deterministic unless
        `cache_nondeterministic`."""
        if self.key_of(request, SHARED_SCOPE) is None:
            return False
        return (request.endpoint not in GENERATIVE or self.cache_nondeterministic
                or deterministic(request.body))

    def _read(self, request: CacheRequest, key: str, scope: str, data: bytes | None) -> Entry | None:
        """The entry `data` (what the backend holds under `key`) when it answers `request` in `scope`."""
        if data is None:
            return None
        try:
            entry = Entry.decode(data, key)
        except CorruptEntry:
            self.counts.add(corrupt=1)
            self.backend.delete(key)
            return None
        if entry.tier != self.tier or entry.fingerprint != request.fingerprint or entry.scope != scope:
            self.counts.add(corrupt=1)  # checks out but is not this request's: never an answer
            return None
        if entry.expired():
            self.backend.delete(key)
            return None
        try:
            entry.response()
        except ValueError:
            self.counts.add(corrupt=1)
            return None
        return entry

    def lookup_keys(self, request: CacheRequest) -> list[tuple[str, str]] | None:
        """The (key, scope) pairs a lookup of `request` reads, best first (the tenant's own, then shared); None
        when this tier does not cache it (counted as skipped)."""
        if not self.cacheable(request):
            self.counts.add(skipped=1)
            return None
        return [(key, scope) for scope in (scope_of(request.tenant, False), SHARED_SCOPE)
                if (key := self.key_of(request, scope)) is not None]

    def answer(self, request: CacheRequest, keys: list[tuple[str, str]], found: Sequence[bytes | None],
               fetch_s: float = 0.0) -> CacheHit | None:
        """The hit among what the backend `found` under `keys` (from `lookup_keys`), or None; `fetch_s`: the
        time the read took, counted in this tier's lookup time."""
        start = time.perf_counter() - fetch_s
        try:
            for (key, scope), data in zip(keys, found, strict=True):
                entry = self._read(request, key, scope, data)
                if entry is not None:
                    self.counts.add(lookups=1, hits=1, saved_s=entry.model_s)
                    return CacheHit(entry.response(), self.tier, entry.key, entry.created,
                                    max(0.0, time.time() - entry.created), entry.model_s, scope == SHARED_SCOPE)
            self.counts.add(lookups=1, misses=1)
            return None
        finally:
            self.counts.add(lookup_s=time.perf_counter() - start)

    def get(self, request: CacheRequest) -> CacheHit | None:
        """The cached answer to `request` (the tenant's own, else a shared one), or None. Never raises for
        anything the backend holds or does."""
        return read_tiers(self.backend, [self], request)

    def put(self, request: CacheRequest, response: Any, *, model_s: float = 0.0, tags: Iterable[str] = (),
            shared: bool | None = None) -> bool:
        """Store `response` (JSON-able) as the answer to `request`; `model_s` is the model time it took (what a
        hit saves); `tags` name it for `invalidate_tag`; `shared` makes it visible to every tenant (default:
        `shared_by_default`). False when not cached (not cacheable, not JSON, or the write was dropped)."""
        if not self.cacheable(request):
            return False
        scope = scope_of(request.tenant, self.shared_by_default if shared is None else shared)
        key = self.key_of(request, scope)
        if key is None:
            return False
        try:
            entry = Entry.make(key, self.tier, request.fingerprint, scope, tuple(tags), self.ttl_s, model_s, response)
        except (TypeError, ValueError):
            self.counts.add(dropped=1)
            return False
        ok = self.backend.put(key, entry.encode(), entry.expires, entry.index_tags)
        self.counts.add(**{"puts" if ok else "dropped": 1})
        return ok

    def invalidate_model(self, fingerprint: str) -> int:
        """Drop this tier's entries of a model (a changed model never sees them anyway: its key differs)."""
        return self.backend.invalidate(f"{self.tier}:model:{fingerprint}")

    def invalidate_tag(self, tag: str) -> int:
        """Drop this tier's entries put with `tag`."""
        return self.backend.invalidate(f"{self.tier}:tag:{tag}")

    def invalidate_tenant(self, tenant: str | None) -> int:
        """Drop this tier's entries of one tenant (not the shared ones)."""
        return self.backend.invalidate(f"{self.tier}:scope:{scope_of(tenant, False)}")

    def purge(self) -> int:
        """Drop every entry of this tier; the number dropped."""
        return self.backend.invalidate(f"tier:{self.tier}")

    def stats(self) -> dict[str, Any]:
        """Counters, stored entries and bytes of this tier, and the backend's health."""
        entries, size = self.backend.usage(f"tier:{self.tier}")
        return {"tier": self.tier, **self.counts.to_json(), "entries": entries, "bytes": size,
                "ttl_s": self.ttl_s, "backend": self.backend.health()}


def read_tiers(backend: Backend, tiers: Sequence[CacheTier], request: CacheRequest) -> CacheHit | None:
    """The first hit of `tiers` (in order) for `request`, or None. Every key they could answer from is read in one
    `backend` call (one Redis round trip; none for a hit in a local front). Only the best present key is sure to
    be read: when its entry is no answer (corrupt, another model's), the lookup is a miss, never a worse answer.
    The read's time counts in the first tier's lookup time."""
    wanted = [(tier, keys) for tier in tiers if (keys := tier.lookup_keys(request)) is not None]
    if not wanted:
        return None
    start = time.perf_counter()
    found = iter(backend.get_many([key for _, keys in wanted for key, _ in keys], first_only=True))
    fetch_s = time.perf_counter() - start
    for tier, keys in wanted:
        hit = tier.answer(request, keys, [next(found) for _ in keys], fetch_s)
        if hit is not None:
            return hit
        fetch_s = 0.0
    return None
