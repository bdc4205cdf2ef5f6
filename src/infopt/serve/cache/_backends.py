"""Storage under every cache tier: the `Backend` base (failures are misses, never errors), an in-process LRU
bounded in bytes. (`Layered`, a local front before a shared back, is in `_backend_layered`.)

A backend stores opaque bytes (an encoded `Entry`) under a key, with an expiry and index tags (`tier:`,
`model:`, `scope:`, `tag:`) that `invalidate(tag)` removes by. Any exception of an operation marks the backend
down (`up`, `failures`, `last_error`) and answers a miss / drops the write; while down, operations are skipped
until a retry time that backs off (doubling to `max_backoff_s`); the first operation that works marks it up.
`subscribe(callback)` tells of every change: this process's at once (`local=True`), other processes' (Redis)
from a listener thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = ["Backend", "CacheEvent", "Listener", "MemoryBackend"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class CacheEvent:
    """A change of a backend: `put` / `delete` of `key`, `invalidate` of `tag`, `clear`, or `resync` (the
    listener reconnected and may have missed events: rebuild what mirrors the cache)."""

    op: Literal["put", "delete", "invalidate", "clear", "resync"]
    key: str | None = None
    tag: str | None = None
    local: bool = True


Listener = Callable[[CacheEvent], None]


class Backend:
    """Failure-tolerant key-value storage; subclasses implement `_get`, `_put`, `_delete`, `_invalidate`,
    `_clear`, `_usage` (and `_get_many` where one round trip can read several keys) and may raise anything."""

    name = "backend"

    def __init__(self, *, backoff_s: float = 0.5, max_backoff_s: float = 30.0) -> None:
        self.up = True
        self.failures = 0
        self.last_error = ""
        self.down_since: float | None = None
        self._backoff0, self._max_backoff = backoff_s, max_backoff_s
        self._backoff = backoff_s
        self._retry_at = 0.0
        self._health = threading.Lock()
        self._listeners: list[Listener] = []

    # ------------------------------------------------------------ health

    def _failed(self, what: str, error: BaseException) -> None:
        with self._health:
            self.failures += 1
            self.last_error = f"{what}: {type(error).__name__}: {error}"
            if self.up:
                log.warning("cache backend %s is down (%s); retrying with backoff", self.name, self.last_error)
                self.up, self.down_since = False, time.time()
                self._backoff = self._backoff0
            else:
                self._backoff = min(self._backoff * 2, self._max_backoff)
            self._retry_at = time.monotonic() + self._backoff

    def _recovered(self) -> None:
        if not self.up:
            with self._health:
                if not self.up:
                    log.warning("cache backend %s is back", self.name)
                self.up, self.down_since, self._backoff = True, None, self._backoff0

    def retry_now(self) -> None:
        """Let the next operation try the backend at once (e.g. when a listener reconnected)."""
        self._retry_at = 0.0

    def _guard(self, what: str, op: Callable[[], T], default: T) -> T:
        if not self.up and time.monotonic() < self._retry_at:
            return default
        try:
            out = op()
        except Exception as e:
            self._failed(what, e)
            return default
        self._recovered()
        return out

    def health(self) -> dict[str, Any]:
        return {"backend": self.name, "up": self.up, "failures": self.failures, "last_error": self.last_error,
                "down_since": self.down_since}

    # ------------------------------------------------------------ events

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call `callback(CacheEvent)` on every change; returns a function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _emit(self, event: CacheEvent) -> None:
        for callback in list(self._listeners):
            try:
                callback(event)
            except Exception:
                log.exception("cache event listener failed on %s", event)

    # ------------------------------------------------------------ operations

    def get(self, key: str) -> bytes | None:
        """The stored bytes, or None (absent, expired, or the backend failed)."""
        return self._guard("get", lambda: self._get(key), None)

    def get_many(self, keys: Sequence[str], first_only: bool = False) -> list[bytes | None]:
        """`get` of each key (one round trip where the backend can); all None when the backend failed.
        `first_only`: only the first key (in order) that is present is sure to be found; later ones may read
        as missing (a lookup that wants the best of several keys reads no more than it needs)."""
        if not keys:
            return []
        return self._guard("get", lambda: self._get_many(keys, first_only), [None] * len(keys))

    def _get_many(self, keys: Sequence[str], first_only: bool) -> list[bytes | None]:
        found: list[bytes | None] = [None] * len(keys)
        for i, key in enumerate(keys):
            found[i] = self._get(key)
            if first_only and found[i] is not None:
                break
        return found

    def put(self, key: str, data: bytes, expires: float | None, tags: Iterable[str]) -> bool:
        """Store `data` until `expires` (unix time; None: no expiry); False when the write was dropped."""
        tags = tuple(tags)
        ok = self._guard("put", lambda: self._put(key, data, expires, tags) is not False, False)
        if ok:
            self._emit(CacheEvent("put", key=key))
        return ok

    def delete(self, key: str) -> None:
        if self._guard("delete", lambda: self._delete(key) is not False, False):
            self._emit(CacheEvent("delete", key=key))

    def invalidate(self, tag: str) -> int:
        """Remove every entry with index tag `tag`; the number removed (0 when the backend failed)."""
        n = self._guard("invalidate", lambda: self._invalidate(tag), -1)
        if n >= 0:
            self._emit(CacheEvent("invalidate", tag=tag))
        return max(n, 0)

    def clear(self) -> int:
        """Remove every entry (of this namespace); the number removed."""
        n = self._guard("clear", self._clear, -1)
        if n >= 0:
            self._emit(CacheEvent("clear"))
        return max(n, 0)

    def usage(self, tag: str | None = None) -> tuple[int, int]:
        """`(entries, bytes)` stored (with index tag `tag`); (0, 0) when the backend failed."""
        return self._guard("usage", lambda: self._usage(tag), (0, 0))

    def keys(self, tag: str) -> list[str]:
        """The keys of the live entries with index tag `tag` (what a restarted process re-indexes); [] when the
        backend failed."""
        return self._guard("keys", lambda: self._keys(tag), [])

    def close(self) -> None:
        """Release connections and threads."""

    # ------------------------------------------------------------ to implement

    def _get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def _put(self, key: str, data: bytes, expires: float | None, tags: tuple[str, ...]) -> bool | None:
        raise NotImplementedError

    def _delete(self, key: str) -> bool | None:
        raise NotImplementedError

    def _invalidate(self, tag: str) -> int:
        raise NotImplementedError

    def _clear(self) -> int:
        raise NotImplementedError

    def _usage(self, tag: str | None) -> tuple[int, int]:
        raise NotImplementedError

    def _keys(self, tag: str) -> list[str]:
        raise NotImplementedError


class MemoryBackend(Backend):
    """An in-process LRU holding at most `max_bytes` of stored bytes (an entry larger than that is not kept);
    safe for several threads."""

    name = "memory"

    def __init__(self, max_bytes: int = 64 * 2**20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, tuple[bytes, float | None, tuple[str, ...]]] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def _drop(self, key: str) -> bool:
        item = self._items.pop(key, None)
        if item is None:
            return False
        self.bytes -= len(item[0])
        for tag in item[2]:
            keys = self._tags.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tags[tag]
        return True

    def _get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[1] is not None and time.time() >= item[1]:
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return item[0]

    def _put(self, key: str, data: bytes, expires: float | None, tags: tuple[str, ...]) -> bool:
        with self._lock:
            self._drop(key)
            if len(data) > self.max_bytes:
                return False
            while self._items and self.bytes + len(data) > self.max_bytes:
                self._drop(next(iter(self._items)))
            self._items[key] = (data, expires, tags)
            self.bytes += len(data)
            for tag in tags:
                self._tags.setdefault(tag, set()).add(key)
            return True

    def _delete(self, key: str) -> bool:
        with self._lock:
            return self._drop(key)

    def _invalidate(self, tag: str) -> int:
        with self._lock:
            return sum(self._drop(k) for k in list(self._tags.get(tag, ())))

    def _clear(self) -> int:
        with self._lock:
            n = len(self._items)
            self._items.clear()
            self._tags.clear()
            self.bytes = 0
            return n

    def _usage(self, tag: str | None) -> tuple[int, int]:
        now = time.time()
        with self._lock:
            keys = self._items if tag is None else self._tags.get(tag, set())
            live = [self._items[k][0] for k in keys if (e := self._items[k][1]) is None or e > now]
            return len(live), sum(map(len, live))

    def _keys(self, tag: str) -> list[str]:
        now = time.time()
        with self._lock:
            return [k for k in self._tags.get(tag, ()) if (e := self._items[k][1]) is None or e > now]
