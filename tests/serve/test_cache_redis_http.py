"""Two server processes sharing a Redis cache: an answer one caches is a hit in the other; with their own Redis
killed mid-run both keep answering (local front / the model) and report the backend down, then use it again
once it is back. The machine's Redis on 6379 is only used under a unique namespace, deleted after."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from .conftest import wait_for_ready  # type: ignore[import-not-found]

CODE = ("import sys; from infopt.serve import load_serve_config, run_server; "
        "run_server(load_serve_config(sys.argv[1]), log_level='warning')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_up(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@contextmanager
def _servers(n: int, clf: Path, tmp_path: Path, redis_url: str, namespace: str,
             extra: str = "") -> Iterator[list[str]]:
    """`n` `run_server` processes serving `clf` with the Redis cache (fast retries), `extra` TOML appended;
    their URLs once ready."""
    procs, urls = [], []
    try:
        for i in range(n):
            port = _free_port()
            config = tmp_path / f"serve{i}.toml"
            config.write_text(f'port = {port}\n[models]\nclf = "{clf}"\n[cache]\nbackend = "redis"\n'
                              f'redis_url = "{redis_url}"\nnamespace = "{namespace}"\nbackoff_s = 0.1\n'
                              'max_backoff_s = 0.3\n' + extra)
            procs.append(subprocess.Popen([sys.executable, "-c", CODE, str(config)], stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):
            wait_for_ready(proc, url, timeout_s=120)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _classify(url: str, text: str) -> httpx.Response:
    r = httpx.post(url + "/v1/classify", json={"model": "clf", "input": text}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def _backend(url: str) -> dict[str, Any]:
    return dict(httpx.get(url + "/v1/stats").json()["cache"]["backend"])


def _delete_namespace(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{namespace}:*", count=500))
    if keys:
        client.delete(*keys)


SEMANTIC = '[cache.semantic]\nenabled = true\nendpoints = ["classify"]\nshadow_share = 0.0\n'


def test_two_servers_share_the_machines_redis(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Exact hits and semantic hits (classify opted in, the real encoder in each process) across processes."""
    url = "redis://127.0.0.1:6379/0"
    if not _redis_up(url):
        pytest.skip("no Redis on 127.0.0.1:6379")
    namespace = f"infopt-test-{uuid.uuid4().hex[:12]}"
    try:
        with _servers(2, model_dirs["clf"], tmp_path, url, namespace, SEMANTIC) as (a, b):
            first = _classify(a, "How do I reset my password?")
            assert "x-infopt-cache" not in first.headers
            second = _classify(b, "How do I reset my password?")
            assert second.headers["x-infopt-cache"] == "exact"
            assert second.json()["data"] == first.json()["data"]
            assert _backend(b)["up"] is True and "memory+redis" in _backend(b)["backend"]
            _until(lambda: httpx.get(b + "/v1/cache/stats").json()["semantic"]["synced"] >= 1)
            paraphrase = _classify(b, "How can I reset my password?")  # a's entry, indexed by b from Redis
            assert paraphrase.headers["x-infopt-cache"] == "semantic"
            assert paraphrase.json()["data"] == first.json()["data"]
            assert "x-infopt-cache" not in _classify(b, "How do I change my email address?").headers
    finally:
        _delete_namespace(url, namespace)
    assert not list(redis.Redis.from_url(url).scan_iter(f"{namespace}:*"))


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _redis_up(f"redis://127.0.0.1:{port}/0"):
        assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return proc


def _until(check: Any, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
def test_redis_down_mid_run_then_back(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    own = _start_redis(port)
    try:
        with _servers(2, model_dirs["clf"], tmp_path, url, "t") as (a, b):
            before = _classify(a, "before the outage").json()["data"]
            assert _classify(b, "before the outage").headers["x-infopt-cache"] == "exact"  # via Redis
            own.terminate()
            own.wait(10)
            for server in (a, b):  # their local fronts still answer; new texts go to the model
                again = _classify(server, "before the outage")
                assert again.headers["x-infopt-cache"] == "exact" and again.json()["data"] == before
                assert "x-infopt-cache" not in _classify(server, f"during the outage {server}").headers
                assert _backend(server)["up"] is False
                assert 'infopt_cache_backend_up{backend="memory+redis"} 0.0' in httpx.get(server + "/metrics").text
            own = _start_redis(port)
            n = iter(range(1000))
            for server in (a, b):  # every request retries the backend once its backoff has passed
                _until(lambda s=server: bool(_classify(s, f"probe {next(n)}") and _backend(s)["up"]))
            assert "x-infopt-cache" not in _classify(a, "after the outage").headers
            after = _classify(b, "after the outage")
            assert after.headers["x-infopt-cache"] == "exact"  # b never saw it: it came through Redis
    finally:
        own.terminate()
        own.wait(10)
