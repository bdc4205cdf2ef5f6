"""Redis: two caches share entries and events through the real Redis on 127.0.0.1:6379 (a namespace of
their own, deleted after), and a Redis of the test's own that dies and comes back mid-test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from infopt.serve.cache import CacheConfig, CacheEvent, CacheRequest, CacheStack, Layered, RedisBackend


def _reachable(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.3).ping())
    except redis.RedisError:
        return False


def _wait(condition: Callable[[], object], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def _request(text: str, tenant: str = "t1") -> CacheRequest:
    return CacheRequest("/v1/classify", {"model": "clf", "input": [text], "truncate": False}, "fp", tenant)


def _back(stack: CacheStack) -> RedisBackend:
    backend = stack.backend
    back = backend.back if isinstance(backend, Layered) else backend
    assert isinstance(back, RedisBackend)
    return back


@pytest.fixture
def namespace() -> Iterator[str]:
    if not _reachable(6379):
        pytest.skip("no Redis on 127.0.0.1:6379")
    ns = f"infopt-test-{uuid.uuid4().hex[:12]}"
    yield ns
    client = redis.Redis(port=6379)
    names = list(client.scan_iter(match=f"{ns}:*"))
    if names:
        client.delete(*names)
    client.close()


def test_two_caches_share_redis(namespace: str) -> None:
    config = CacheConfig(backend="redis", namespace=namespace)
    one, two = CacheStack.open(config), CacheStack.open(config)
    try:
        events: list[CacheEvent] = []
        two.backend.subscribe(events.append)
        assert _wait(lambda: _back(one).listening and _back(two).listening)
        request = _request("shared text")
        assert two.get(request) is None
        assert one.put(request, {"label": "pos"}, model_s=0.25, tags=("faq",))
        hit = two.get(request)
        assert hit is not None and hit.response == {"label": "pos"} and hit.model_s == 0.25
        assert _wait(lambda: any(e.op == "put" and not e.local for e in events))
        put = next(e for e in events if e.op == "put" and not e.local)
        assert put.key == hit.key
        assert redis.Redis(port=6379).pttl(f"{namespace}:e:{hit.key}") > 0  # the Redis key has a TTL too
        # an invalidation in one reaches the other's local front through the events channel
        assert one.invalidate_tag("faq") == 1
        assert _wait(lambda: any(e.op == "invalidate" and not e.local for e in events))
        assert two.get(request) is None
        assert two.stats()["tiers"]["exact"]["hits"] == 1
    finally:
        one.purge()
        one.close()
        two.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait(lambda: _reachable(port)), "redis-server did not start"
    return proc


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
def test_redis_going_down_and_coming_back() -> None:
    port = _free_port()
    proc = _start(port)
    config = CacheConfig(backend="redis", redis_url=f"redis://127.0.0.1:{port}/0", namespace="flaky",
                         backoff_s=0.1, max_backoff_s=0.4)
    stack = CacheStack.open(config)
    events: list[CacheEvent] = []
    stack.backend.subscribe(events.append)
    try:
        assert _wait(lambda: _back(stack).listening)
        kept = _request("kept")
        assert stack.put(kept, {"label": "pos"}) and stack.backend.health()["up"]
        proc.kill()
        proc.wait()
        started = time.perf_counter()
        assert stack.get(_request("never stored")) is None  # touches Redis: a miss, not an error
        hit = stack.get(kept)
        assert hit is not None and hit.response == {"label": "pos"}  # the local front still answers
        assert stack.put(_request("while down"), {"label": "neg"})  # kept locally, the Redis write dropped
        assert stack.get(_request("while down")) is not None
        assert time.perf_counter() - started < 2.0
        health = stack.stats()["backend"]
        assert health["up"] is False and health["failures"] >= 1 and health["down_since"] is not None
        proc = _start(port)
        after = _request("after")
        assert _wait(lambda: stack.put(after, {"label": "pos"}) and stack.backend.up, timeout_s=10)
        assert _wait(lambda: any(e.op == "resync" for e in events), timeout_s=10)
        other = CacheStack.open(CacheConfig(backend="redis", redis_url=config.redis_url, namespace="flaky",
                                            local_front=False))
        try:
            stack.put(after, {"label": "pos"})
            again = other.get(after)
            assert again is not None and again.response == {"label": "pos"}  # in Redis again
        finally:
            other.close()
    finally:
        stack.close()
        proc.kill()
        proc.wait()
