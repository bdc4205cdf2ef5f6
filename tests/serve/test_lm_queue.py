"""Generation off the event loop, one at a time: health during a generation, 429, 504, disconnects, drain and
crashes, against real uvicorn servers holding a gated tiny Llama (see conftest.Gate)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import torch

from infopt.models import LoadedModel
from infopt.serve import BatchingConfig, ModelSpec, ServeCacheConfig, ServeConfig, create_app


def limits(**batching: Any) -> ServeConfig:
    return ServeConfig(models=(ModelSpec("x", "x"),), batching=BatchingConfig(**batching),
                       cache=ServeCacheConfig(exact=False, prompt=False))  # these tests count model calls


def complete(url: str, timeout: float = 30, **body: Any) -> httpx.Response:
    return httpx.post(url + "/v1/completions", json={"model": "lm", "prompt": "hi", "max_tokens": 4, **body},
                      timeout=timeout)


def code_of(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


def wait_until(condition: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def idle(server: Any) -> bool:
    return server.state.models["lm"].generator._running is None


def test_health_answers_while_generating(live: Any, gated: Any, tiny_lm: LoadedModel) -> None:
    model, gate = gated(tiny_lm)
    server = live(create_app({"lm": model}, config=limits()))
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(complete, server.url)
        assert gate.entered.acquire(timeout=10)  # the generation is inside the model
        for path in ("/health", "/ready", "/metrics", "/v1/models"):
            t0 = time.perf_counter()
            assert httpx.get(server.url + path, timeout=5).status_code == 200
            assert time.perf_counter() - t0 < 1.0, path
        gate.opened.set()
        assert running.result(10).status_code == 200


def test_health_answers_during_real_compute(live: Any, tiny_lm: LoadedModel) -> None:
    class Busy(torch.nn.Module):
        """The tiny model plus ~20 ms of matrix products per token (torch releases the GIL in them)."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = tiny_lm.model
            self.config = tiny_lm.model.config
            self.w = torch.randn(384, 384)

        def forward(self, **inputs: Any) -> Any:
            deadline = time.perf_counter() + 0.02
            while time.perf_counter() < deadline:
                self.w @ self.w
            return self.inner(**inputs)

    server = live(create_app({"lm": LoadedModel(Busy(), tiny_lm.tokenizer, tiny_lm.manifest)}, config=limits()))
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(complete, server.url, max_tokens=20)
        wait_until(lambda: not idle(server))
        worst = 0.0
        while not running.done():
            t0 = time.perf_counter()
            assert httpx.get(server.url + "/health", timeout=5).status_code == 200
            worst = max(worst, time.perf_counter() - t0)
        assert running.result().status_code == 200 and worst < 0.5


def test_queue_full_is_429(live: Any, gated: Any, tiny_lm: LoadedModel) -> None:
    model, gate = gated(tiny_lm)
    server = live(create_app({"lm": model}, config=limits(max_queue=1)))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(complete, server.url)
        assert gate.entered.acquire(timeout=10)
        second = pool.submit(complete, server.url, stream=True)
        wait_until(lambda: server.state.models["lm"].generator.depth == 1)
        for stream in (False, True):
            r = complete(server.url, stream=stream)
            assert r.status_code == 429 and code_of(r) == "queue_full" and int(r.headers["retry-after"]) >= 1
        gate.opened.set()
        assert first.result(10).status_code == 200 and second.result(10).status_code == 200
    assert 'infopt_rejections_total{model="lm",reason="queue_full"} 2.0' in httpx.get(server.url + "/metrics").text


def test_timeouts_are_504_and_free_the_model(live: Any, gated: Any, tiny_lm: LoadedModel) -> None:
    model, gate = gated(tiny_lm)
    server = live(create_app({"lm": model}, config=limits(timeout_s=0.5)))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(complete, server.url, max_tokens=50)
        assert gate.entered.acquire(timeout=10)
        queued = complete(server.url)
        assert queued.status_code == 504 and code_of(queued) == "timeout" and "in the queue" in queued.text
        r = first.result(10)
        assert r.status_code == 504 and "took more than 0.5 s" in r.text
    gate.opened.set()
    wait_until(lambda: idle(server))
    assert len(gate.batch_sizes) < 10  # the timed-out generation stopped at its next token
    assert complete(server.url).status_code == 200


def test_stream_disconnect_stops_the_generation(live: Any, gated: Any, tiny_lm: LoadedModel) -> None:
    model, gate = gated(tiny_lm, delay_s=0.02, gated=False)
    server = live(create_app({"lm": model}, config=limits()))
    body = {"model": "lm", "prompt": "hi", "max_tokens": 100, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        next(r.iter_lines())  # the first event, then the client goes away
    wait_until(lambda: idle(server))
    assert len(gate.batch_sizes) < 50, len(gate.batch_sizes)
    stats = httpx.get(server.url + "/v1/stats").json()["models"]["lm"]
    assert 0 < stats["completion_tokens"] < 50


def test_disconnect_while_waiting_stops_the_generation(live: Any, gated: Any, tiny_lm: LoadedModel) -> None:
    model, gate = gated(tiny_lm, delay_s=0.02, gated=False)
    server = live(create_app({"lm": model}, config=limits()))
    try:
        complete(server.url, timeout=0.3, max_tokens=100)
        raise AssertionError("the request should have timed out on the client")
    except httpx.ReadTimeout:
        pass
    wait_until(lambda: idle(server))
    assert len(gate.batch_sizes) < 60, len(gate.batch_sizes)
    metrics = httpx.get(server.url + "/metrics").text
    assert 'infopt_rejections_total{model="lm",reason="client_closed"} 1.0' in metrics


def test_disconnect_in_the_queue_drops_the_job(live: Any, gated: Any, tiny_lm: LoadedModel) -> None:
    model, gate = gated(tiny_lm)
    server = live(create_app({"lm": model}, config=limits()))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(complete, server.url)
        assert gate.entered.acquire(timeout=10)
        for stream in (False, True):
            try:
                complete(server.url, timeout=0.3, stream=stream)
                raise AssertionError("the request should have timed out on the client")
            except httpx.ReadTimeout:
                pass
        wait_until(lambda: server.state.models["lm"].generator.depth == 0)  # gone before the model was free
        gate.opened.set()
        assert first.result(10).status_code == 200
    wait_until(lambda: idle(server))
    assert len(gate.batch_sizes) == 4  # only the first request's 4 tokens ran


def test_drain_finishes_the_generation_and_refuses_new(live: Any, gated: Any, tiny_lm: LoadedModel) -> None:
    model, gate = gated(tiny_lm)
    server = live(create_app({"lm": model}, config=limits()))
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(complete, server.url)
        assert gate.entered.acquire(timeout=10)
        assert server.loop is not None
        drained = asyncio.run_coroutine_threadsafe(server.state.drain(), server.loop)
        wait_until(lambda: server.state.status == "draining")
        assert httpx.get(server.url + "/ready").status_code == 503
        r = complete(server.url)
        assert r.status_code == 503 and code_of(r) == "draining"
        gate.opened.set()
        r = in_flight.result(10)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
        drained.result(10)


def test_crash_is_a_500_or_an_error_event(live: Any, tiny_lm: LoadedModel, sse: Any) -> None:
    class Broken(torch.nn.Module):
        config = tiny_lm.model.config

        def forward(self, **inputs: Any) -> Any:
            raise RuntimeError("secret internal detail")

    models = {"lm": LoadedModel(Broken(), tiny_lm.tokenizer, tiny_lm.manifest), "ok": tiny_lm}
    server = live(create_app(models, config=limits()))
    r = complete(server.url)
    assert r.status_code == 500 and code_of(r) == "internal_error" and "secret" not in r.text
    body = {"model": "lm", "prompt": "hi", "max_tokens": 4, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as s:
        events = sse(s)
    assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "internal_error"
    assert "secret" not in str(events)
    assert complete(server.url, model="ok").status_code == 200
