"""Backends: corrupt entries are misses in every backend, the LRU's byte bound, SQLite across re-opens and
threads, a file that is not a database, failures as misses with backoff, the layered front, and reading several
keys in one call."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from infopt.serve.cache import (
    Backend,
    CacheEvent,
    CacheRequest,
    Entry,
    ExactCache,
    Layered,
    MemoryBackend,
    RedisBackend,
    SQLiteBackend,
)
from infopt.serve.cache._store import _checksum


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        b: Backend = MemoryBackend(1 << 20)
    elif request.param == "sqlite":
        b = SQLiteBackend(tmp_path / "c.sqlite")
    else:
        if not _redis_up():
            pytest.skip("no Redis on 127.0.0.1:6379")
        b = RedisBackend(namespace=f"infopt-test-{uuid.uuid4().hex[:12]}")
    yield b
    b.clear()
    b.close()


REQ = CacheRequest("/v1/classify", {"model": "clf", "input": ["hi"], "truncate": False}, "fp", "t1")


def _rewrite(data: bytes, **changes: object) -> bytes:
    fields = json.loads(data)
    fields.pop("sha256")
    fields.update(changes)
    fields["sha256"] = _checksum(fields)
    return json.dumps(fields).encode()


def _corruptions(data: bytes, other: bytes) -> dict[str, bytes]:
    flipped = data.replace(b'pos', b'neg')
    assert flipped != data
    return {"truncated": data[: len(data) // 2], "garbage": b"\x00\xffnot json", "empty": b"",
            "list": b"[1, 2]", "version": _rewrite(data, v=99), "checksum": flipped,
            "no checksum": json.dumps({k: v for k, v in json.loads(data).items() if k != "sha256"}).encode(),
            "other key": other, "other model": _rewrite(data, fp="fp-other"),
            "bad payload": _rewrite(data, payload="{not json")}


def test_corrupt_entries_are_counted_misses(backend: Backend) -> None:
    cache = ExactCache(backend, ttl_s=60)
    assert cache.put(REQ, {"label": "pos"})
    key = cache.key(REQ, "t:t1")
    assert key is not None
    good = backend.get(key)
    assert good is not None and cache.get(REQ) is not None
    other_req = CacheRequest(REQ.endpoint, {**REQ.body, "input": ["other"]}, "fp", "t1")
    cache.put(other_req, {"label": "pos"})
    other_key = cache.key(other_req, "t:t1")
    assert other_key is not None
    other = backend.get(other_key)
    assert other is not None
    for n, (name, bad) in enumerate(_corruptions(good, other).items(), start=1):
        assert backend.put(key, bad, time.time() + 60, ()), name
        assert cache.get(REQ) is None, name
        assert cache.counts.corrupt == n, name
    assert cache.counts.hits == 1
    assert cache.put(REQ, {"label": "pos"}) and cache.get(REQ) is not None


def test_events_of_local_changes(backend: Backend) -> None:
    events: list[CacheEvent] = []
    unsubscribe = backend.subscribe(events.append)
    backend.put("k", b"x", None, ("tag:a",))
    assert backend.get("k") == b"x"
    assert backend.invalidate("tag:a") == 1 and backend.get("k") is None
    unsubscribe()
    backend.put("k2", b"x", None, ())
    assert [(e.op, e.key, e.tag, e.local) for e in events] == [("put", "k", None, True),
                                                             ("invalidate", None, "tag:a", True)]


def test_usage_keys_and_expiry(backend: Backend) -> None:
    backend.put("a", b"12345", None, ("tier:x",))
    backend.put("b", b"123", time.time() + 0.3, ("tier:x",))
    backend.put("c", b"1", None, ("tier:y",))
    assert backend.usage("tier:x") == (2, 8)
    assert backend.usage() == (3, 9)
    time.sleep(0.5)
    assert backend.get("b") is None and backend.usage("tier:x") == (1, 5)
    assert backend.keys("tier:x") == ["a"] and backend.keys("tier:none") == []
    assert backend.clear() >= 2 and backend.usage() == (0, 0)


def test_lru_is_bounded_in_bytes() -> None:
    lru = MemoryBackend(max_bytes=1000)
    for i in range(10):
        assert lru.put(f"k{i}", bytes(300), None, ())
        assert lru.bytes <= 1000
    assert lru.usage() == (3, 900)
    assert lru.get("k0") is None and lru.get("k9") is not None
    lru.get("k7")  # recently used: kept over k8
    lru.put("big", bytes(300), None, ())
    assert lru.get("k7") is not None and lru.get("k8") is None
    assert not lru.put("huge", bytes(1001), None, ()) and lru.get("huge") is None


def test_sqlite_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "c.sqlite"
    first = ExactCache(SQLiteBackend(path), ttl_s=60)
    assert first.put(REQ, {"label": "pos"}, model_s=0.5)
    first.backend.close()
    db = SQLiteBackend(path)
    again = ExactCache(db, ttl_s=60)
    hit = again.get(REQ)
    assert hit is not None and hit.response == {"label": "pos"} and hit.model_s == 0.5
    mode = db._conn().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    db.close()


def test_sqlite_prunes_expired_rows(tmp_path: Path) -> None:
    db = SQLiteBackend(tmp_path / "c.sqlite", prune_every=3)
    db.put("old", b"x", time.time() + 0.05, ("t",))
    time.sleep(0.1)
    db.put("a", b"x", None, ())
    db.put("b", b"x", None, ())  # the third put prunes
    rows = db._conn().execute("SELECT key FROM entries ORDER BY key").fetchall()
    assert rows == [("a",), ("b",)]
    assert db._conn().execute("SELECT COUNT(*) FROM tags").fetchone()[0] == 0
    db.close()


def test_sqlite_from_several_threads(tmp_path: Path) -> None:
    db = SQLiteBackend(tmp_path / "c.sqlite")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                assert db.put(f"{n}-{i}", b"v" * i, None, (f"tag:{n}",))
                assert db.get(f"{n}-{i}") == b"v" * i
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and db.usage()[0] == 200 and db.up and db.failures == 0
    db.close()


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    db = SQLiteBackend(path)
    assert db.put("k", b"v", None, ()) and db.get("k") == b"v" and db.up
    assert len(list(tmp_path.glob("c.sqlite.corrupt-*"))) == 1
    db.close()


class _Flaky(MemoryBackend):
    broken = False

    def _get(self, key: str) -> bytes | None:
        if self.broken:
            raise ConnectionError("down")
        return super()._get(key)


def test_a_failing_backend_is_a_miss_and_backs_off() -> None:
    b = _Flaky(backoff_s=0.2, max_backoff_s=1)
    b.put("k", b"v", None, ())
    b.broken = True
    assert b.get("k") is None and not b.up and b.failures == 1 and "down" in b.last_error
    assert b.get("k") is None and b.failures == 1  # skipped while backing off
    b.broken = False
    assert b.get("k") is None  # still backing off
    time.sleep(0.25)
    assert b.get("k") == b"v" and b.up and b.health()["up"]


def test_layered_reads_through_and_writes_through(tmp_path: Path) -> None:
    back = SQLiteBackend(tmp_path / "c.sqlite")
    front = MemoryBackend(1 << 20)
    layered = Layered(front, back)
    entry = Entry.make("k", "exact", "fp", "t:", (), 60, 0.1, {"a": 1})
    assert layered.put("k", entry.encode(), entry.expires, entry.index_tags)
    assert front.get("k") is not None and back.get("k") is not None
    front.clear()
    assert layered.get("k") == entry.encode() and front.get("k") == entry.encode()  # filled on the way
    assert layered.invalidate("exact:model:fp") == 1
    assert front.get("k") is None and back.get("k") is None
    assert layered.up and layered.health()["backend"] == "memory+sqlite"
    layered.close()


def test_get_many_in_order_and_first_only(backend: Backend) -> None:
    assert backend.get_many([]) == []
    backend.put("b", b"2", None, ())
    backend.put("c", b"3", None, ())
    assert backend.get_many(["a", "b", "c"]) == [None, b"2", b"3"]
    first = backend.get_many(["a", "b", "c"], first_only=True)
    assert first[:2] == [None, b"2"] and first[2] in (None, b"3")  # only the first present one is sure


class _Counting(MemoryBackend):
    """A back that counts its reads (a stand-in for Redis round trips)."""

    def __init__(self) -> None:
        super().__init__(1 << 20)
        self.reads: list[list[str]] = []

    def get_many(self, keys: Sequence[str], first_only: bool = False) -> list[bytes | None]:
        self.reads.append(list(keys))
        return super().get_many(keys, first_only)


def test_layered_get_many_asks_the_back_once_and_only_before_the_front_hit() -> None:
    back = _Counting()
    layered = Layered(MemoryBackend(1 << 20), back)
    entry = Entry.make("x", "exact", "fp", "t:", (), 60, 0.1, {"a": 1})
    back.put("b", entry.encode(), entry.expires, entry.index_tags)
    assert layered.get_many(["a", "b", "c"]) == [None, entry.encode(), None]
    assert back.reads == [["a", "b", "c"]]  # one call for the three front misses; "b" joined the front
    back.reads.clear()
    assert layered.get_many(["b", "a"], first_only=True) == [entry.encode(), None] and back.reads == []
    assert layered.get_many(["a", "b"], first_only=True)[1] == entry.encode() and back.reads == [["a"]]
    layered.close()


def test_the_stack_reads_both_tiers_in_one_backend_call() -> None:
    from infopt.serve.cache import CacheStack

    back = _Counting()
    stack = CacheStack(back)
    chat = CacheRequest("/v1/chat/completions", {"model": "lm", "messages": [{"role": "user", "content": "hi"}],
                                                 "temperature": 0.0}, "fp", "t1")
    assert stack.get(chat) is None
    assert len(back.reads) == 1 and len(back.reads[0]) == 4  # exact and prompt, own and shared scope
    assert stack.put(chat, {"answer": 1})
    back.reads.clear()
    hit = stack.get(chat)
    assert hit is not None and hit.tier == "exact" and len(back.reads) == 1
    stats = stack.stats()["tiers"]
    assert stats["exact"]["hits"] == 1 and stats["exact"]["lookups"] == 2 and stats["prompt"]["lookups"] == 1


def test_corrupt_entries_read_through_a_front_are_misses() -> None:
    """The front takes what the back holds after a cheap look (`peek`); the checks of every answer stay."""
    back = MemoryBackend(1 << 20)
    layered = Layered(MemoryBackend(1 << 20), back)
    cache = ExactCache(layered, ttl_s=60)
    assert cache.put(REQ, {"label": "pos"})
    key = cache.key(REQ, "t:t1")
    other_req = CacheRequest(REQ.endpoint, {**REQ.body, "input": ["other"]}, "fp", "t1")
    assert key is not None and cache.put(other_req, {"label": "pos"})
    good, other = back.get(key), back.get(str(cache.key(other_req, "t:t1")))
    assert good is not None and other is not None
    for name, bad in _corruptions(good, other).items():
        layered.front.clear()
        assert back.put(key, bad, time.time() + 60, ()), name
        assert cache.get(REQ) is None and cache.get(REQ) is None, name  # read through, then from the front
    layered.front.clear()
    assert back.put(key, good, time.time() + 60, ()) and cache.get(REQ) is not None
