"""`CacheStack`: the backend and the exact and prompt tiers a `CacheConfig` describes, with the admin
operations over all of them.

    caches = CacheStack.open(CacheConfig(backend="redis"))
    hit = caches.get(request)                     # exact, then prompt
    caches.put(request, response, model_s=0.8)    # into every tier that caches it
    caches.stats(); caches.invalidate_tag("faq"); caches.purge(); caches.close()
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infopt.serve.cache._backend_layered import Layered
from infopt.serve.cache._backend_sqlite import SQLiteBackend
from infopt.serve.cache._backends import Backend, MemoryBackend
from infopt.serve.cache._exact import ExactCache, PromptCache
from infopt.serve.cache._store_config import CacheConfig
from infopt.serve.cache._tiers import CacheHit, CacheRequest, CacheTier, read_tiers

__all__ = ["CacheStack", "open_backend"]


def open_backend(config: CacheConfig) -> Backend:
    """The backend of `config`: an LRU, a SQLite file, or Redis (behind a local LRU when `local_front`)."""
    retry: dict[str, Any] = {"backoff_s": config.backoff_s, "max_backoff_s": config.max_backoff_s}
    if config.backend == "memory":
        return MemoryBackend(config.max_bytes, **retry)
    if config.backend == "sqlite":
        return SQLiteBackend(config.sqlite_path, **retry)
    from infopt.serve.cache._redis import RedisBackend

    back = RedisBackend(config.redis_url, config.namespace, **retry)
    return Layered(MemoryBackend(config.max_bytes), back) if config.local_front else back


class CacheStack:
    """The exact and prompt tiers (those enabled) over one backend."""

    def __init__(self, backend: Backend, config: CacheConfig | None = None) -> None:
        config = config or CacheConfig()
        self.config, self.backend = config, backend
        common: dict[str, Any] = {"cache_nondeterministic": config.cache_nondeterministic,
                                  "shared_by_default": config.shared_by_default}
        self.exact = ExactCache(backend, ttl_s=config.exact_ttl_s, **common) if config.exact else None
        self.prompt = PromptCache(backend, ttl_s=config.prompt_ttl_s, **common) if config.prompt else None

    @classmethod
    def open(cls, config: CacheConfig | None = None) -> CacheStack:
        config = config or CacheConfig()
        return cls(open_backend(config), config)

    @property
    def tiers(self) -> list[CacheTier]:
        return [t for t in (self.exact, self.prompt) if t is not None]

    def get(self, request: CacheRequest) -> CacheHit | None:
        """The first hit of the exact, then the prompt tier, or None; both tiers' keys are read in one backend
        call (see `read_tiers`)."""
        return read_tiers(self.backend, self.tiers, request)

    def put(self, request: CacheRequest, response: Any, *, model_s: float = 0.0, tags: Iterable[str] = (),
            shared: bool | None = None) -> bool:
        """Store the answer in every tier that caches the request; whether any took it."""
        tags = tuple(tags)
        done = [t.put(request, response, model_s=model_s, tags=tags, shared=shared) for t in self.tiers]
        return any(done)

    def invalidate_model(self, fingerprint: str) -> int:
        return sum(t.invalidate_model(fingerprint) for t in self.tiers)

    def invalidate_tag(self, tag: str) -> int:
        return sum(t.invalidate_tag(tag) for t in self.tiers)

    def purge(self) -> int:
        """Drop every entry of these tiers."""
        return sum(t.purge() for t in self.tiers)

    def stats(self) -> dict[str, Any]:
        """`{"backend": health, "tiers": {name: stats}}`, and the totals of hits and saved model time."""
        tiers = {t.tier: t.stats() for t in self.tiers}
        return {"backend": self.backend.health(), "tiers": tiers,
                "hits": sum(s["hits"] for s in tiers.values()),
                "saved_s": round(sum(s["saved_s"] for s in tiers.values()), 6)}

    def close(self) -> None:
        self.backend.close()
