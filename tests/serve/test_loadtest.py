"""The load generator: loopback check, schedules, text plans, percentiles, /metrics parsing, and bounded load
tests against real servers (the tiny models; a fake streaming endpoint for time to first token)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse

from infopt.errors import UserError
from infopt.serve import LoadtestConfig, Sample, run_loadtest
from infopt.serve._loadreport import batch_histogram, parse_histogram, percentile, summarize
from infopt.serve._loadtest import arrival_times, check_loopback, plan_texts
from infopt.serve._metrics import Metrics

TEXTS = [f"review number {i}: {'good' if i % 2 else 'bad'} film" for i in range(300)]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "127.0.0.1:8000", "http://127.9.8.7", "https://localhost:1/",
                                 "http://LOCALHOST:80", "http://[::1]:8000", "http://[::ffff:127.0.0.1]:80",
                                 "http://localhost.:8000"])
def test_loopback_targets_are_taken(url: str) -> None:
    out = check_loopback(url)
    assert out.startswith(("http://", "https://")) and not out.endswith("/")


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://0.0.0.0:8000", "http://[::]:80", "http://192.168.1.2",
                                 "http://example.com", "http://localhost.example.com", "http://127.0.0.1.nip.io",
                                 "http://127.0.0.1@example.com/", "ftp://127.0.0.1", "http://127.1", "http://",
                                 "http://8.8.8.8#@127.0.0.1"])
def test_other_targets_are_refused(url: str) -> None:
    with pytest.raises(UserError, match=r"loopback|http"):
        check_loopback(url)
    with pytest.raises(UserError):
        LoadtestConfig(url, model="clf")


def test_config_checks() -> None:
    assert LoadtestConfig("127.0.0.1:9", model="m").url == "http://127.0.0.1:9"
    assert LoadtestConfig("127.0.0.1:9", model="m", rate=5).mode == "open"
    for bad in ({"rate": 0}, {"concurrency": 0}, {"repeat_share": 1.0}, {"endpoint": "nope"}, {"batch": 0},
                {"endpoint": "chat", "batch": 2}, {"model": " "}, {"arrival": "burst"}):
        with pytest.raises(UserError):
            LoadtestConfig(**{"url": "127.0.0.1:9", "model": "m", **bad})


def test_fixed_and_poisson_schedules() -> None:
    assert arrival_times(4, 2.0, "fixed") == [0.0, 0.5, 1.0, 1.5]
    times = arrival_times(20_000, 50.0, "poisson", seed=1)
    assert times[0] == 0 and times == sorted(times) and times == arrival_times(20_000, 50.0, "poisson", seed=1)
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.03)
    assert gaps.std() == pytest.approx(1 / 50, rel=0.05)  # exponential: std == mean
    assert arrival_times(5, 50.0, seed=2) != arrival_times(5, 50.0, seed=1)


def test_text_plans_repeat_their_share() -> None:
    plan = plan_texts(TEXTS, 100, 1, 0.0)
    assert len({p[0] for p in plan}) == 100 and all(len(p) == 1 for p in plan)
    plan = plan_texts([f"text {i}" for i in range(6000)], 2000, 3, 0.3, seed=4)
    assert all(len(p) == 3 for p in plan)
    seen: set[str] = set()
    repeats = 0
    for texts in plan:
        for t in texts:
            repeats += t in seen
            seen.add(t)
    assert repeats / 6000 == pytest.approx(0.3, abs=0.04)
    cycled = [p[0] for p in plan_texts(["a", "b", "a"], 4, 1, 0.0)]  # deduplicated; cycled when it runs out
    assert set(cycled) == {"a", "b"} and cycled[:2] == cycled[2:]
    with pytest.raises(UserError):
        plan_texts([], 1, 1, 0.0)


def test_percentiles_match_numpy() -> None:
    values = list(np.random.default_rng(0).exponential(size=101))
    for q in (0, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_metrics_histogram_difference() -> None:
    m = Metrics()
    m.add_model("clf")
    m.batch("other", 5, 0.01)
    assert parse_histogram(m.render().decode(), "infopt_batch_size", {"model": "clf"}) == {}
    m.batch("clf", 1, 0.01)
    before = parse_histogram(m.render().decode(), "infopt_batch_size", {"model": "clf"})
    assert before["1.0"] == 1 and before["+Inf"] == 1 and before["_count"] == 1 and before["_sum"] == 1
    for size in (1, 3, 3, 40, 300):
        m.batch("clf", size, 0.01)
    after = parse_histogram(m.render().decode(), "infopt_batch_size", {"model": "clf"})
    h = batch_histogram(before, after)
    assert h.calls == 5 and h.inputs == 347 and h.mean == pytest.approx(347 / 5)
    assert h.buckets == {"1": 1, "2": 0, "4": 2, "8": 0, "16": 0, "32": 0, "64": 1, "128": 0, "256": 0, "+Inf": 1}
    assert batch_histogram({}, after).calls == 6


def test_summary_counts_errors_by_status() -> None:
    samples = [Sample("200", 0.010, items=2), Sample("200", 0.030, items=2), Sample("503", 0.001),
               Sample("timeout", 30.0), Sample("503", 0.002)]
    r = summarize(samples, 2.0, config={}, mode="closed", item="texts", batch_size=None)
    assert (r.sent, r.ok, r.errors, r.items, r.items_per_s, r.requests_per_s) == (
        5, 2, {"503": 2, "timeout": 1}, 4, 2.0, 1.0)
    assert r.latency_ms is not None and r.latency_ms["p50"] == pytest.approx(20.0) and r.ttft_ms is None
    json.dumps(r.to_json())


def test_closed_loop_against_a_real_server(server: Any) -> None:
    config = LoadtestConfig(server.url, model="clf", concurrency=6, requests=80, duration_s=5)
    r = run_loadtest(config, texts=TEXTS)
    assert r.sent == 80 or r.elapsed_s >= 5  # whichever bound comes first (80 take ~2 s here)
    assert (r.ok, r.errors, r.mode, r.item, r.items) == (r.sent, {}, "closed", "texts", r.sent)
    assert r.latency_ms is not None and 0 < r.latency_ms["p50"] <= r.latency_ms["p95"] <= r.latency_ms["p99"]
    assert r.batch_size is not None and r.batch_size.inputs == r.sent
    assert sum(r.batch_size.buckets.values()) == r.batch_size.calls >= 1
    assert r.requests_per_s > 0 and r.ttft_ms is None


def test_open_loop_against_a_real_server(server: Any, tmp_path: Path) -> None:
    data = tmp_path / "texts.txt"
    data.write_text("\n\n".join(TEXTS))
    config = LoadtestConfig(server.url, model="emb", endpoint="embeddings", rate=25.0, duration_s=2.0,
                            requests=200, data=str(data), batch=2, repeat_share=0.3, seed=3)
    hits_before = httpx.get(server.url + "/v1/stats").json()["cache"]["hits"]
    r = run_loadtest(config, output=tmp_path / "out")
    expected = sum(t < 2.0 for t in arrival_times(200, 25.0, "poisson", 3))
    assert (r.sent, r.ok, r.errors, r.items) == (expected, expected, {}, 2 * expected)
    hits = httpx.get(server.url + "/v1/stats").json()["cache"]["hits"] - hits_before  # repeats the cache answered
    assert r.batch_size is not None and r.batch_size.inputs == 2 * (expected - hits)
    saved = json.loads((tmp_path / "out" / "loadtest.json").read_text())
    assert saved["sent"] == expected and saved["config"]["rate"] == 25.0 and saved["batch_size"]["calls"] >= 1
    with pytest.raises(UserError, match="earlier infopt loadtest"):
        run_loadtest(config, output=tmp_path / "out")  # refused before sending anything


def test_loadtest_counts_server_errors(server: Any) -> None:
    config = LoadtestConfig(server.url, model="clf", endpoint="embeddings", concurrency=2, requests=10)
    r = run_loadtest(config, texts=TEXTS)
    assert (r.sent, r.ok, r.errors, r.latency_ms) == (10, 0, {"422": 10}, None)


def _fake_lm() -> FastAPI:
    app = FastAPI()
    app.state.infopt = None  # LiveServer reads it

    @app.post("/v1/completions")
    async def completions(body: dict[str, Any]) -> Any:
        async def events() -> Any:
            for word in ("a", "b", "c"):
                await asyncio.sleep(0.01)
                yield "data: " + json.dumps({"choices": [{"index": 0, "text": word}]}) + "\n\n"
            yield "data: " + json.dumps({"choices": [], "usage": {"completion_tokens": 3}}) + "\n\n"
            yield "data: [DONE]\n\n"

        if body.get("stream"):
            return StreamingResponse(events(), media_type="text/event-stream")
        return {"choices": [{"text": "abc"}], "usage": {"completion_tokens": body["max_tokens"]}}

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> StreamingResponse:
        assert body["messages"][0]["role"] == "user" and body["stream"] is True

        async def events() -> Any:
            if body["model"] == "broken":
                yield "data: " + json.dumps({"error": {"message": "boom"}}) + "\n\n"
                return
            for word in ("x", "y"):
                yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": word}}]}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse("nope", status_code=404)

    return app


def test_streaming_time_to_first_token(live: Any) -> None:
    s = live(_fake_lm())
    r = run_loadtest(LoadtestConfig(s.url, model="lm", endpoint="completions", concurrency=3, requests=12),
                     texts=TEXTS)
    assert (r.ok, r.items, r.item) == (12, 36, "tokens")
    assert r.ttft_ms is not None and r.latency_ms is not None
    assert 5 <= r.ttft_ms["p50"] < r.latency_ms["p50"]
    assert r.batch_size is None and "404" in r.notes[0]
    r = run_loadtest(LoadtestConfig(s.url, model="lm", endpoint="completions", stream=False, requests=4,
                                    max_tokens=7), texts=TEXTS)
    assert (r.ok, r.items, r.ttft_ms) == (4, 28, None)
    r = run_loadtest(LoadtestConfig(s.url, model="lm", endpoint="chat", requests=5), texts=TEXTS)
    assert (r.ok, r.items, r.errors) == (5, 10, {}) and r.ttft_ms is not None
    r = run_loadtest(LoadtestConfig(s.url, model="broken", endpoint="chat", requests=3), texts=TEXTS)
    assert (r.ok, r.errors) == (0, {"stream-error": 3})
