"""`CacheConfig`: which tiers run, on which backend, how big, for how long."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from infopt._config import check_bool, check_choice, check_int, check_number, field_error

__all__ = ["BACKENDS", "CacheConfig", "default_path"]

BACKENDS = ("memory", "sqlite", "redis")


def default_path() -> Path:
    """The SQLite file when `path` is not given: `cache_dir()/serve-cache/responses.sqlite`."""
    from infopt.models import cache_dir

    return cache_dir() / "serve-cache" / "responses.sqlite"


@dataclasses.dataclass(frozen=True)
class CacheConfig:
    """The response caches of a server (exact and prompt tiers, and the storage under every tier)."""

    exact: bool = True
    """Run the exact tier (a request seen before, field for field)."""
    prompt: bool = True
    """Run the prompt tier (completions / chat with the same canonical prompt and sampling)."""
    backend: str = "sqlite"
    """Where entries live: "memory" (this process), "sqlite" (a file; survives restarts) or "redis" (shared)."""
    path: str | None = None
    """The SQLite file (None: `cache_dir()/serve-cache/responses.sqlite`)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """The Redis server of the "redis" backend."""
    namespace: str = "infopt"
    """Prefix of every Redis key and of the events channel (letters, digits, `_ . -`)."""
    max_bytes: int = 64 * 2**20
    """Bytes of the in-process LRU ("memory", and the local front of "redis")."""
    local_front: bool = True
    """With "redis": keep a local LRU of `max_bytes` in front (it answers while Redis is down)."""
    exact_ttl_s: float | None = 3600.0
    """Seconds an exact-tier entry lives (None: until invalidated)."""
    prompt_ttl_s: float | None = 3600.0
    """Seconds a prompt-tier entry lives (None: until invalidated)."""
    cache_nondeterministic: bool = False
    """Also cache generations that are samples (temperature > 0 without a seed)."""
    shared_by_default: bool = False
    """Store entries visible to every tenant unless a put says otherwise."""
    backoff_s: float = 0.5
    """First wait before retrying a backend that failed (it doubles, up to `max_backoff_s`)."""
    max_backoff_s: float = 30.0
    """Longest wait between retries of a failed backend."""

    def __post_init__(self) -> None:
        for name in ("exact", "prompt", "local_front", "cache_nondeterministic", "shared_by_default"):
            check_bool(self, name)
        check_choice(self, "backend", BACKENDS)
        if self.path is not None and not isinstance(self.path, str):
            if not isinstance(self.path, Path):
                raise field_error(self, "path", self.path, "a file path, or None")
            object.__setattr__(self, "path", str(self.path))
        if not isinstance(self.redis_url, str) or not re.match(r"^(redis|rediss|unix)://", self.redis_url):
            raise field_error(self, "redis_url", self.redis_url, 'a URL such as "redis://127.0.0.1:6379/0"')
        if not isinstance(self.namespace, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", self.namespace):
            raise field_error(self, "namespace", self.namespace, "a name of letters, digits and _ . -")
        check_int(self, "max_bytes", min=1)
        for name in ("exact_ttl_s", "prompt_ttl_s"):
            check_number(self, name, low=0, bounds="(]", optional=True, example=3600)
        check_number(self, "backoff_s", low=0, bounds="(]", example=0.5)
        check_number(self, "max_backoff_s", low=self.backoff_s, example=30)

    @property
    def sqlite_path(self) -> Path:
        return Path(self.path) if self.path is not None else default_path()
