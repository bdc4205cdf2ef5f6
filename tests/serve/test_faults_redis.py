"""Redis faults under load, injected for real on a redis-server the test starts on a free port (never the machine's
6379): killed with SIGKILL mid-load and started again empty, and hung (SIGSTOP) then resumed. Every request is
answered 200 with the model's own answer, in bounded time; the server reports the backend down, then uses it
again once it is back."""

from __future__ import annotations

import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from infopt.models import LoadedModel
from infopt.serve import ModelSpec, ServeCacheConfig, ServeConfig, create_app

from .test_cache_redis_http import _free_port, _start_redis, _until  # type: ignore[import-not-found]

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
TEXTS = [f"review number {i}: a {'good' if i % 2 else 'dull'} film" for i in range(12)]


@pytest.fixture
def own_redis() -> Iterator[tuple[int, list[Any]]]:
    """A redis-server on a free port: (port, [process]) — the test may replace the process; it is stopped after."""
    port = _free_port()
    procs = [_start_redis(port)]
    yield port, procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(10)


def _server(live: Any, model: LoadedModel, port: int, **cache: Any) -> Any:
    config = ServeConfig(models=(ModelSpec("x", "x"),), cache=ServeCacheConfig(
        backend="redis", redis_url=f"redis://127.0.0.1:{port}/0", namespace=f"t{uuid.uuid4().hex[:8]}",
        backoff_s=0.1, max_backoff_s=0.3, **cache))
    return live(create_app({"clf": model}, config=config))


def _classify(url: str, text: str) -> httpx.Response:
    return httpx.post(url + "/v1/classify", json={"model": "clf", "input": text}, timeout=30)


def _backend(url: str) -> dict[str, Any]:
    return dict(httpx.get(url + "/v1/stats", timeout=10).json()["cache"]["backend"])


def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """The same answer: labels equal, probabilities within 1e-4 (a text batched with others is padded, which moves
    its floats in the 6th digit)."""
    return len(a) == len(b) and all(
        x["label"] == y["label"] and x["probabilities"].keys() == y["probabilities"].keys()
        and all(abs(x["probabilities"][k] - y["probabilities"][k]) < 1e-4 for k in x["probabilities"])
        for x, y in zip(a, b, strict=True))


def _load(url: str, truth: dict[str, Any], stop: threading.Event, failures: list[str], slowest: list[float]) -> None:
    i = 0
    while not stop.is_set():
        text = TEXTS[i % len(TEXTS)] if i % 3 else f"{TEXTS[i % len(TEXTS)]} #{i}"  # hits and new texts
        i += 1
        t0 = time.monotonic()
        r = _classify(url, text)
        slowest.append(time.monotonic() - t0)
        if r.status_code != 200:
            failures.append(f"{r.status_code} {r.text[:200]}")
        elif text in truth and not same(r.json()["data"], truth[text]):
            failures.append(f"wrong answer for {text!r}: {r.json()['data']} != {truth[text]}")


def _under_load(url: str, truth: dict[str, Any], fault: Any, threads: int = 6) -> tuple[list[str], float]:
    stop, failures, times = threading.Event(), [], []  # type: ignore[var-annotated]
    workers = [threading.Thread(target=_load, args=(url, truth, stop, failures, times)) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        fault()
        time.sleep(1.5)
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    assert len(times) > threads, "the load did not run"
    return failures, max(times)


def test_redis_killed_mid_load_then_back_empty(live: Any, tiny_bert_classifier: LoadedModel,
                                                own_redis: tuple[int, list[Any]]) -> None:
    port, procs = own_redis
    server = _server(live, tiny_bert_classifier, port, local_front=False)
    truth = {t: _classify(server.url, t).json()["data"] for t in TEXTS}
    assert all(_classify(server.url, t).headers.get("x-infopt-cache") == "exact" for t in TEXTS)

    def kill() -> None:
        procs[0].kill()  # SIGKILL: no goodbye to the clients
        procs[0].wait(10)

    failures, _ = _under_load(server.url, truth, kill)
    assert not failures, failures[:5]
    assert _backend(server.url)["up"] is False
    for t in TEXTS:  # no front, no Redis: the model answers, rightly
        r = _classify(server.url, t)
        assert r.status_code == 200 and same(r.json()["data"], truth[t]) and "x-infopt-cache" not in r.headers

    procs.append(_start_redis(port))  # back, empty (no persistence): nothing stale, entries stored anew
    _until(lambda: _classify(server.url, TEXTS[0]).status_code == 200 and _backend(server.url)["up"])
    for t in TEXTS:
        assert same(_classify(server.url, t).json()["data"], truth[t])
    for t in TEXTS:
        r = _classify(server.url, t)
        assert r.headers.get("x-infopt-cache") == "exact" and same(r.json()["data"], truth[t])
    assert redis.Redis(port=port).dbsize() >= len(TEXTS)


def test_a_hung_redis_costs_bounded_time_and_no_wrong_answer(
        live: Any, tiny_bert_classifier: LoadedModel, own_redis: tuple[int, list[Any]], tmp_path: Path) -> None:
    port, procs = own_redis
    server = _server(live, tiny_bert_classifier, port)
    truth = {t: _classify(server.url, t).json()["data"] for t in TEXTS}
    failures, slowest = _under_load(server.url, truth, lambda: procs[0].send_signal(signal.SIGSTOP))
    assert not failures, failures[:5]
    assert slowest < 10, f"a request took {slowest:.1f} s with Redis hung"  # socket timeouts, then backoff
    _until(lambda: _classify(server.url, "probe while hung").status_code == 200
           and _backend(server.url)["up"] is False)
    t0 = time.monotonic()
    r = _classify(server.url, "a text never seen, Redis hung")
    assert r.status_code == 200 and time.monotonic() - t0 < 5
    procs[0].send_signal(signal.SIGCONT)
    n = iter(range(1000))
    _until(lambda: _classify(server.url, f"probe {next(n)}").status_code == 200 and _backend(server.url)["up"])
    for t in TEXTS:
        r = _classify(server.url, t)
        assert r.status_code == 200 and same(r.json()["data"], truth[t])
