"""Tenant-scoped caches across replicas: two servers with [auth] (each its own app, cache and local front) share one
real Redis started by the test on a free port; tenant A's answer cached by server 1 is a hit for A on server 2 and
a miss for tenant B there, whatever X-Tenant B sends."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from infopt.serve import ModelSpec, ServeCacheConfig, ServeConfig, create_app
from infopt.serve._auth import ApiKey, AuthConfig, key_digest

KEYS = {"alice": ("sk-alice-1", "acme"), "bob": ("sk-bob-2", "acme"), "eve": ("sk-eve-3", "evil")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _redis() -> Iterator[str]:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(url, socket_connect_timeout=0.5).ping():
                    break
            except redis.RedisError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _config(clf: Path, redis_url: str) -> ServeConfig:
    keys = tuple(ApiKey(name, key_digest(key), tenant=tenant) for name, (key, tenant) in KEYS.items())
    return ServeConfig(models=(ModelSpec("clf", str(clf)),), auth=AuthConfig(keys=keys),
                       cache=ServeCacheConfig(backend="redis", redis_url=redis_url, namespace="tenants"))


def _classify(url: str, who: str, text: str, **headers: str) -> httpx.Response:
    r = httpx.post(url + "/v1/classify", json={"model": "clf", "input": text}, timeout=30,
                   headers={"Authorization": f"Bearer {KEYS[who][0]}", **headers})
    assert r.status_code == 200, r.text
    return r


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
def test_a_tenants_entries_reach_its_keys_on_every_replica_and_no_other_tenant(model_dirs: dict[str, Path],
                                                                               live: Any) -> None:
    with _redis() as url:
        one, two = (live(create_app(_config(model_dirs["clf"], url))).wait_ready().url for _ in range(2))
        text = "the quarterly numbers of acme"
        first = _classify(one, "alice", text)
        assert "x-infopt-cache" not in first.headers
        on_two = _classify(two, "alice", text)  # through Redis: server 2 never computed it
        assert on_two.headers["x-infopt-cache"] == "exact" and on_two.json()["data"] == first.json()["data"]
        assert _classify(two, "bob", text).headers["x-infopt-cache"] == "exact"  # bob's key: the same tenant
        assert "x-infopt-cache" not in _classify(two, "eve", text).headers
        assert _classify(two, "eve", text).headers["x-infopt-cache"] == "exact"  # now eve's own entry
        _classify(one, "alice", "another text")
        spoof = _classify(two, "eve", "another text", **{"X-Tenant": "acme"})  # the header cannot claim acme
        assert "x-infopt-cache" not in spoof.headers
        stats = httpx.get(two + "/v1/stats", headers={"Authorization": f"Bearer {KEYS['eve'][0]}"}).json()
        assert stats["cache"]["backend"]["up"] is True and "redis" in stats["cache"]["backend"]["backend"]
        stored = [k.decode() for k in redis.Redis.from_url(url).scan_iter("tenants:*")]
        assert stored and not any(key in k for k in stored for key, _ in KEYS.values())  # no key is stored
