"""Batching, back-pressure and the server's life cycle, over HTTP against real uvicorn servers."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from infopt.models import LoadedModel
from infopt.serve import BatchingConfig, ModelSpec, ServeCacheConfig, ServeConfig, create_app


def limits(**batching: Any) -> ServeConfig:
    return ServeConfig(models=(ModelSpec("x", "x"),), batching=BatchingConfig(**batching),
                       cache=ServeCacheConfig(exact=False, prompt=False))  # these tests count model calls


def classify(url: str, text: str = "a good film", model: str = "clf") -> httpx.Response:
    return httpx.post(url + "/v1/classify", json={"model": model, "input": text}, timeout=30)


def code_of(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


def test_concurrent_requests_form_batches(live: Any, gated: Any, tiny_bert_classifier: LoadedModel) -> None:
    model, gate = gated(tiny_bert_classifier, delay_s=0.02, gated=False)
    server = live(create_app({"clf": model}, config=limits(max_batch_size=16, max_queue=128)))
    texts = [f"film number {i} " + "good " * (i % 7) for i in range(96)]

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            return await asyncio.gather(*(client.post("/v1/classify", json={"model": "clf", "input": t})
                                          for t in texts))

    t0 = time.perf_counter()
    responses = asyncio.run(fire())
    assert time.perf_counter() - t0 < 20
    assert [r.status_code for r in responses] == [200] * len(texts), {r.text for r in responses}
    assert max(gate.batch_sizes) > 1 and max(gate.batch_sizes) <= 16
    assert len(gate.batch_sizes) < len(texts)
    # batched (padded) answers equal the one-at-a-time ones
    alone = torch.softmax(tiny_bert_classifier.predict(texts[:8]), -1)
    for r, expected in zip(responses[:8], alone, strict=True):
        got = r.json()["data"][0]["probabilities"]
        assert [got["negative"], got["positive"]] == pytest.approx(expected.tolist(), abs=1e-4)
    metrics = httpx.get(server.url + "/metrics").text
    assert 'infopt_batch_size_count{model="clf"}' in metrics
    stats = httpx.get(server.url + "/v1/stats").json()["models"]["clf"]
    assert stats["inputs"] == len(texts) and stats["batch_size"]["max"] > 1


def test_queue_full_is_429_with_retry_after(live: Any, gated: Any, tiny_bert_classifier: LoadedModel) -> None:
    model, gate = gated(tiny_bert_classifier)
    server = live(create_app({"clf": model}, config=limits(max_batch_size=1, max_queue=1)))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(classify, server.url)
        assert gate.entered.acquire(timeout=10)  # in flight
        second = pool.submit(classify, server.url)
        deadline = time.monotonic() + 10
        while server.state.models["clf"].batcher.depth < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        r = classify(server.url)
        assert r.status_code == 429 and code_of(r) == "queue_full" and int(r.headers["retry-after"]) >= 1
        gate.opened.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
    assert 'infopt_rejections_total{model="clf",reason="queue_full"} 1.0' in httpx.get(server.url + "/metrics").text


def test_a_burst_past_the_queue_is_refused_at_the_door(live: Any, gated: Any,
                                                      tiny_bert_classifier: LoadedModel) -> None:
    model, gate = gated(tiny_bert_classifier)
    server = live(create_app({"clf": model}, config=limits(max_batch_size=2, max_queue=4)))

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=40)) as c:
            sent = [asyncio.ensure_future(c.post("/v1/classify", json={"model": "clf", "input": f"film {i}"}))
                    for i in range(24)]
            deadline = time.monotonic() + 20
            while sum(f.done() for f in sent) < 18 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            early = [f.result().status_code for f in sent if f.done()]  # answered while the model is held
            gate.opened.set()
            assert len(early) >= 18 and set(early) == {429}, early
            return await asyncio.gather(*sent)

    codes = [r.status_code for r in asyncio.run(burst())]
    # what the queue holds (4), and the batch held (0 to 2, by when it started), get in; the rest is refused
    assert 4 <= codes.count(200) <= 6 and codes.count(429) == 24 - codes.count(200), codes
    assert server.state.models["clf"].batcher._inside == 0
    assert classify(server.url).status_code == 200


def test_queue_timeout_is_504(live: Any, gated: Any, tiny_bert_classifier: LoadedModel) -> None:
    model, gate = gated(tiny_bert_classifier)
    server = live(create_app({"clf": model}, config=limits(max_batch_size=1, timeout_s=0.3)))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(classify, server.url)
        assert gate.entered.acquire(timeout=10)
        queued = classify(server.url)
        assert queued.status_code == 504 and code_of(queued) == "timeout" and "in the queue" in queued.text
        assert first.result().status_code == 504
    gate.opened.set()
    assert classify(server.url).status_code == 200


def test_loading_is_503_then_ready(live: Any, model_dirs: dict[str, Path]) -> None:
    from infopt.models import load_model

    go = threading.Event()

    def slow_loader(path: str | Path) -> LoadedModel:
        go.wait(20)
        return load_model(path)

    config = ServeConfig(models=(ModelSpec("clf", str(model_dirs["clf"])),))
    server = live(create_app(config, loader=slow_loader))
    r = httpx.get(server.url + "/ready")
    assert r.status_code == 503 and r.json()["status"] == "loading"
    r = classify(server.url)
    assert r.status_code == 503 and code_of(r) == "loading"
    assert code_of(classify(server.url, model="other")) == "model_not_found"
    assert httpx.get(server.url + "/health").status_code == 200
    go.set()
    server.wait_ready(20)
    assert classify(server.url).status_code == 200


def test_failed_load_is_503(live: Any, tmp_path: Path) -> None:
    server = live(create_app(ServeConfig(models=(ModelSpec("clf", str(tmp_path / "missing")),))))
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/ready").json()["status"] == "loading" and time.monotonic() < deadline:
        time.sleep(0.02)
    r = httpx.get(server.url + "/ready")
    assert r.status_code == 503 and r.json()["status"] == "failed" and "missing" in r.json()["error"]
    assert code_of(classify(server.url)) == "load_failed"


def test_drain_finishes_in_flight_and_refuses_new(live: Any, gated: Any, tiny_bert_classifier: LoadedModel) -> None:
    model, gate = gated(tiny_bert_classifier)
    server = live(create_app({"clf": model}, config=limits()))
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(classify, server.url)
        assert gate.entered.acquire(timeout=10)
        assert server.loop is not None
        drained = asyncio.run_coroutine_threadsafe(server.state.drain(), server.loop)
        deadline = time.monotonic() + 10
        while server.state.status != "draining" and time.monotonic() < deadline:
            time.sleep(0.005)
        assert httpx.get(server.url + "/ready").status_code == 503
        r = classify(server.url)
        assert r.status_code == 503 and code_of(r) == "draining"
        gate.opened.set()
        assert in_flight.result().status_code == 200
        drained.result(10)


def test_crash_is_a_bare_500_and_the_server_lives(live: Any, tiny_bert_classifier: LoadedModel) -> None:
    class Broken(torch.nn.Module):
        config = tiny_bert_classifier.model.config

        def forward(self, **inputs: Any) -> Any:
            raise RuntimeError("secret internal detail")

    broken = LoadedModel(Broken(), tiny_bert_classifier.tokenizer, tiny_bert_classifier.manifest)
    server = live(create_app({"clf": broken, "ok": tiny_bert_classifier}, config=limits()))
    r = classify(server.url)
    assert r.status_code == 500 and code_of(r) == "internal_error"
    assert "secret" not in r.text and "Traceback" not in r.text
    assert classify(server.url, model="ok").status_code == 200


def test_an_onnx_model_with_two_batch_workers_answers_concurrent_requests_like_predict(
        live: Any, tiny_bert_classifier: LoadedModel) -> None:
    from infopt.compress.quantize import quantize

    onnx = quantize(tiny_bert_classifier, "onnx-fp32")
    server = live(create_app({"clf": onnx}, config=limits(max_batch_size=4, workers=2)))
    info = httpx.get(server.url + "/v1/models").json()["data"][0]
    assert info["batch_workers"] == 2 and not info["packing"]
    texts = [f"film number {i} " + "good " * (i % 5) for i in range(40)]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda t: classify(server.url, t), texts))
    assert [r.status_code for r in responses] == [200] * len(texts)
    want = torch.softmax(tiny_bert_classifier.predict(texts), -1)
    got = [[r.json()["data"][0]["probabilities"][k] for k in ("negative", "positive")] for r in responses]
    assert torch.allclose(torch.tensor(got), want, atol=1e-4)
