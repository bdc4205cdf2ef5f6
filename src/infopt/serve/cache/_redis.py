"""Redis backend (redis-py) for caches shared by several server processes.

Keys: `<namespace>:e:<key>` (the entry, with a Redis TTL from its expiry) and `<namespace>:i:<tag>` (index sets,
which expire with their last entry). Every change is published on `<namespace>:events` as JSON
(`{"o": origin, "op": "put", "key": ...}`); `subscribe(callback)` starts a listener thread that hands other
processes' changes to `callback` as `CacheEvent(local=False)`, and a `resync` event after it reconnects.
Timeouts are short and redis-py's own retries are off: a Redis that is down costs a request little, and the
`Backend` base skips it (with backoff) until it answers again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infopt.serve.cache._backends import Backend, CacheEvent, Listener

__all__ = ["RedisBackend"]

log = logging.getLogger(__name__)

_PUT = """
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl) else redis.call('SET', KEYS[1], ARGV[2]) end
for i = 2, #KEYS do
  local existed = redis.call('EXISTS', KEYS[i])
  redis.call('SADD', KEYS[i], ARGV[1])
  if ttl <= 0 then redis.call('PERSIST', KEYS[i])
  else
    local left = redis.call('PTTL', KEYS[i])
    if existed == 0 or (left >= 0 and left < ttl) then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""

_INVALIDATE = """
local members = redis.call('SMEMBERS', KEYS[1])
local n = 0
for _, m in ipairs(members) do n = n + redis.call('DEL', ARGV[1] .. m) end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return n
"""

_ALL = "*"
"""The index tag every entry has (the namespace's entry list)."""


class RedisBackend(Backend):
    """Entries in the Redis at `url` under `namespace` (letters, digits, `_ . -`)."""

    name = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", namespace: str = "infopt", *,
                 connect_timeout_s: float = 0.25, timeout_s: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url, self.namespace = url, namespace
        self.client = redis.Redis.from_url(url, socket_connect_timeout=connect_timeout_s, socket_timeout=timeout_s,
                                           retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        self.channel = f"{namespace}:events"
        self.origin = uuid.uuid4().hex
        self._put_script = self.client.register_script(_PUT)
        self._invalidate_script = self.client.register_script(_INVALIDATE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = False

    def _key(self, key: str) -> str:
        return f"{self.namespace}:e:{key}"

    def _index(self, tag: str) -> str:
        return f"{self.namespace}:i:{tag}"

    def _event(self, op: str, **fields: str) -> str:
        return json.dumps({"o": self.origin, "op": op, **fields})

    def _get(self, key: str) -> bytes | None:
        data = self.client.get(self._key(key))
        return None if data is None else bytes(data)  # type: ignore[arg-type]

    def _get_many(self, keys: Sequence[str], first_only: bool) -> list[bytes | None]:  # one MGET either way
        found = self.client.mget([self._key(k) for k in keys])
        return [None if d is None else bytes(d) for d in found]  # type: ignore[arg-type,union-attr]

    def _put(self, key: str, data: bytes, expires: float | None, tags: tuple[str, ...]) -> bool:
        ttl_ms = 0 if expires is None else int((expires - time.time()) * 1000)
        if expires is not None and ttl_ms <= 0:
            return False
        keys = [self._key(key), *(self._index(t) for t in (_ALL, *tags))]
        self._put_script(keys=keys, args=[key, data, ttl_ms, self.channel, self._event("put", key=key)])
        return True

    def _delete(self, key: str) -> bool:
        n = self.client.delete(self._key(key))
        self.client.publish(self.channel, self._event("delete", key=key))
        return bool(n)

    def _invalidate(self, tag: str) -> int:
        n = self._invalidate_script(keys=[self._index(tag)],
                                    args=[f"{self.namespace}:e:", self.channel, self._event("invalidate", tag=tag)])
        return int(n)  # type: ignore[arg-type]

    def _clear(self) -> int:
        n = 0
        batch: list[Any] = []
        for name in self.client.scan_iter(match=f"{self.namespace}:*", count=500):
            if not bytes(name).startswith(b"%s:events" % self.namespace.encode()):
                n += bytes(name).startswith(f"{self.namespace}:e:".encode())
                batch.append(name)
            if len(batch) >= 500:
                self.client.delete(*batch)
                batch = []
        if batch:
            self.client.delete(*batch)
        self.client.publish(self.channel, self._event("clear"))
        return n

    def _usage(self, tag: str | None) -> tuple[int, int]:
        index = self._index(_ALL if tag is None else tag)
        members = [bytes(m).decode() for m in self.client.smembers(index)]  # type: ignore[union-attr,arg-type]
        if not members:
            return 0, 0
        pipe = self.client.pipeline(transaction=False)
        for m in members:
            pipe.strlen(self._key(m))
        sizes = [int(s) for s in pipe.execute()]
        dead = [m for m, s in zip(members, sizes, strict=True) if s == 0]
        if dead:
            self.client.srem(index, *dead)
        live = [s for s in sizes if s > 0]
        return len(live), sum(live)

    def _keys(self, tag: str) -> list[str]:
        members = [bytes(m).decode() for m in self.client.smembers(self._index(tag))]  # type: ignore[union-attr,arg-type]
        pipe = self.client.pipeline(transaction=False)
        for m in members:
            pipe.exists(self._key(m))
        return [m for m, live in zip(members, pipe.execute() if members else [], strict=True) if live]

    # ------------------------------------------------------------ pub/sub

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call `callback(CacheEvent)` on this object's changes (at once) and other processes' (from a thread)."""
        unsubscribe = super().subscribe(callback)
        if self._thread is None:
            self._thread = threading.Thread(target=self._listen, name=f"cache-{self.namespace}", daemon=True)
            self._thread.start()
        return unsubscribe

    def _dispatch(self, data: Any) -> None:
        try:
            message = json.loads(data)
            if message.get("o") == self.origin:
                return
            event = CacheEvent(message["op"], key=message.get("key"), tag=message.get("tag"), local=False)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a malformed cache event on %s: %r", self.channel, data)
            return
        self._emit(event)

    def _listen(self) -> None:
        backoff, connected_before = 0.1, False
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                pubsub.get_message(timeout=0.05)  # the subscribe confirmation: we are connected now
                self.listening, backoff = True, 0.1
                if connected_before:
                    self.retry_now()
                    self._emit(CacheEvent("resync", local=False))
                connected_before = True
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["data"])
            except Exception as e:
                self.listening = False
                if not self._stop.is_set():
                    log.debug("cache listener on %s lost Redis (%s)", self.channel, e)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
        self.listening = False

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self.client.close()
