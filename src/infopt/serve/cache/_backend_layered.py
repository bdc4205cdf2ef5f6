"""`Layered`: a local front (an LRU) before a shared back (Redis, SQLite), read-through and write-through."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from infopt.serve.cache._backends import Backend, CacheEvent
from infopt.serve.cache._store import peek

__all__ = ["Layered"]


class Layered(Backend):
    """`front` (a local LRU) before `back` (Redis, SQLite): reads try the front, then the back (and fill the
    front); writes and invalidations go to both. While the back is down the front still answers. Changes
    other processes make through the back drop the front's copies; a `resync` clears the front."""

    def __init__(self, front: Backend, back: Backend) -> None:
        super().__init__()
        self.front, self.back = front, back
        self.name = f"{front.name}+{back.name}"
        back.subscribe(self._on_back)

    def _on_back(self, event: CacheEvent) -> None:
        if not event.local:
            if event.op in ("put", "delete") and event.key is not None:
                self.front.delete(event.key)
            elif event.op == "invalidate" and event.tag is not None:
                self.front.invalidate(event.tag)
            else:
                self.front.clear()
        self._emit(event)

    @property  # type: ignore[override]
    def up(self) -> bool:
        return self.back.up

    @up.setter
    def up(self, value: bool) -> None:
        pass

    def health(self) -> dict[str, Any]:
        return {**self.back.health(), "backend": self.name, "front": self.front.health()}

    def get(self, key: str) -> bytes | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str], first_only: bool = False) -> list[bytes | None]:
        """From the front, the rest from the back in one call (what it finds, unexpired, joins the front);
        `first_only`: the back is asked only for the keys before the front's first hit."""
        found = self.front.get_many(keys)
        upto = next((i for i, data in enumerate(found) if data is not None), len(keys)) if first_only else len(keys)
        missing = [i for i in range(upto) if found[i] is None]
        if missing:
            for i, data in zip(missing, self.back.get_many([keys[i] for i in missing], first_only), strict=True):
                meta = peek(data) if data is not None else None
                if meta is not None and (meta[0] is None or meta[0] > time.time()):
                    self.front.put(keys[i], data, meta[0], meta[1])  # type: ignore[arg-type]
                found[i] = data
        return found

    def put(self, key: str, data: bytes, expires: float | None, tags: Iterable[str]) -> bool:
        tags = tuple(tags)
        front = self.front.put(key, data, expires, tags)
        return self.back.put(key, data, expires, tags) or front

    def delete(self, key: str) -> None:
        self.front.delete(key)
        self.back.delete(key)

    def invalidate(self, tag: str) -> int:
        return max(self.front.invalidate(tag), self.back.invalidate(tag))

    def clear(self) -> int:
        return max(self.front.clear(), self.back.clear())

    def usage(self, tag: str | None = None) -> tuple[int, int]:
        return self.back.usage(tag) if self.back.up else self.front.usage(tag)

    def keys(self, tag: str) -> list[str]:
        return self.back.keys(tag) if self.back.up else self.front.keys(tag)

    def close(self) -> None:
        self.front.close()
        self.back.close()
