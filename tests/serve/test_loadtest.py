"""The load generator: loopback check, schedules, text plans (repeats, paraphrases), percentiles, /metrics
parsing, answers by cache tier, and bounded load tests against real servers (the tiny models; fake streaming
endpoints for time to first token and cache headers)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from rich.console import Console

from infopt.errors import UserError
from infopt.serve import CACHE_HEADER, LoadtestConfig, Sample, print_loadtest, run_loadtest
from infopt.serve._loadreport import batch_histogram, cache_summary, parse_histogram, percentile, summarize
from infopt.serve._loadtest import _workload, arrival_times, check_loopback, plan_workload
from infopt.serve._metrics import Metrics
from infopt.serve.cache._pairs import load_pairs

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
                {"endpoint": "chat", "batch": 2}, {"model": " "}, {"arrival": "burst"}, {"paraphrase_share": 1.0},
                {"paraphrase_share": -0.1}, {"temperature": 2.5}):
        with pytest.raises(UserError):
            LoadtestConfig(**{"url": "127.0.0.1:9", "model": "m", **bad})
    with pytest.raises(UserError, match="together they must be below 1"):
        LoadtestConfig("127.0.0.1:9", model="m", repeat_share=0.5, paraphrase_share=0.5)
    assert LoadtestConfig("127.0.0.1:9", model="m", repeat_share=0.4, paraphrase_share=0.5).paraphrase_share == 0.5


def plan_texts(pool: list[str], n: int, batch: int, repeat_share: float, seed: int = 0) -> list[list[str]]:
    return plan_workload(pool, n, batch, repeat_share, seed).requests


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
    w = plan_workload([f"text {i}" for i in range(6000)], 2000, 3, 0.3, seed=4)
    assert w.requests == plan and sum(w.counts().values()) == 6000 and w.counts()["paraphrase"] == 0
    assert w.counts()["repeat"] == repeats and sum(w.counts(10).values()) == 30


def test_paraphrase_plans_send_b_after_a() -> None:
    pairs = [(f"q{i}", f"p{i}.{j}") for i in range(400) for j in range(3)] + [("q0", "q1"), ("x", "x")]
    w = plan_workload([a for a, _ in pairs], 700, 1, 0.2, seed=2, pairs=pairs, paraphrase_share=0.3)
    sent: set[str] = set()
    for (text,), (kind,) in zip(w.requests, w.kinds, strict=True):
        if kind == "paraphrase":
            assert text not in sent and any(b == text and a in sent for a, b in pairs)
        elif kind == "repeat":
            assert text in sent
        else:
            assert text not in sent and not text.startswith("p")  # new: from the pool of a texts, unsent first
        sent.add(text)
    counts = w.counts()
    assert counts["repeat"] / 700 == pytest.approx(0.2, abs=0.05)
    assert counts["paraphrase"] / 700 == pytest.approx(0.3, abs=0.05)
    assert w == plan_workload([a for a, _ in pairs], 700, 1, 0.2, seed=2, pairs=pairs, paraphrase_share=0.3)
    few = plan_workload(["a", "b"], 40, 1, 0.0, pairs=[("a", "a2")], paraphrase_share=0.9)  # one b, then new
    assert few.counts()["paraphrase"] == 1 and [t for (t,) in few.requests].count("a2") == 1


def test_paraphrase_workloads_use_the_bundled_pairs() -> None:
    positives = [p for p in load_pairs() if p.same]
    config = LoadtestConfig("127.0.0.1:9", model="m", endpoint="chat", requests=300, repeat_share=0.2,
                            paraphrase_share=0.4, seed=1)
    w = _workload(config, None)
    news = {t for (t,), (k,) in zip(w.requests, w.kinds, strict=True) if k == "new"}
    assert news <= {p.a for p in positives}
    paraphrases = [t for (t,), (k,) in zip(w.requests, w.kinds, strict=True) if k == "paraphrase"]
    assert paraphrases and set(paraphrases) <= {p.b for p in positives} and len(set(paraphrases)) == len(paraphrases)
    with pytest.raises(UserError, match="bundled paraphrase pairs"):
        _workload(config, TEXTS)


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


def test_cache_summary_by_tier() -> None:
    samples = [Sample("200", 0.001, cache="exact"), Sample("200", 0.003, cache="exact"),
               Sample("200", 0.004, cache="semantic"), Sample("200", 0.5), Sample("200", 0.7),
               Sample("503", 0.001, cache="exact"), Sample("200", 0.002, cache="other")]
    c = cache_summary(samples)
    assert (c["hits"], c["model_calls"], c["hit_rate"]) == (4, 2, round(4 / 6, 4))
    tiers = c["tiers"]
    assert list(tiers) == ["exact", "prompt", "semantic", "other", "miss"]
    assert tiers["exact"]["requests"] == 2 and tiers["exact"]["latency_ms"]["p50"] == pytest.approx(2.0)
    assert tiers["prompt"] == {"requests": 0, "rate": 0.0, "latency_ms": None}
    assert tiers["miss"]["latency_ms"]["mean"] == pytest.approx(600.0) and tiers["miss"]["rate"] == 0.3333
    r = summarize(samples, 1.0, config={"endpoint": "chat", "model": "m", "url": "u"}, mode="closed", item="texts",
                  batch_size=None, workload={"new": 3, "repeat": 2, "paraphrase": 2})
    assert r.cache == c and r.to_json()["cache"]["model_calls"] == 2 and r.to_json()["workload"]["paraphrase"] == 2
    out = io.StringIO()
    print_loadtest(r, Console(file=out, width=200))
    text = out.getvalue()
    assert "miss (model)" in text and "model calls (misses) 2" in text and "paraphrase 2" in text


def test_closed_loop_against_a_real_server(server: Any) -> None:
    config = LoadtestConfig(server.url, model="clf", concurrency=6, requests=80, duration_s=5)
    r = run_loadtest(config, texts=TEXTS)
    assert r.sent == 80 or r.elapsed_s >= 5  # whichever bound comes first (80 take ~2 s here)
    assert (r.ok, r.errors, r.mode, r.item, r.items) == (r.sent, {}, "closed", "texts", r.sent)
    assert r.latency_ms is not None and 0 < r.latency_ms["p50"] <= r.latency_ms["p95"] <= r.latency_ms["p99"]
    assert r.batch_size is not None and r.batch_size.inputs == r.sent
    assert sum(r.batch_size.buckets.values()) == r.batch_size.calls >= 1
    assert r.requests_per_s > 0 and r.ttft_ms is None


def test_exact_hits_are_counted_against_a_real_server(server: Any) -> None:
    texts = [f"cache count review {i}: {'fine' if i % 3 else 'dull'} plot" for i in range(200)]  # new to the cache
    stats_before = httpx.get(server.url + "/v1/stats").json()["cache"]
    config = LoadtestConfig(server.url, model="clf", concurrency=1, requests=60, repeat_share=0.5, seed=5)
    r = run_loadtest(config, texts=texts)  # one at a time: every repeat finds its first answer stored
    hits = httpx.get(server.url + "/v1/stats").json()["cache"]["hits"] - stats_before["hits"]
    assert (r.ok, r.errors, r.workload["paraphrase"]) == (60, {}, 0)
    exact = r.cache["tiers"]["exact"]
    assert exact["requests"] == r.workload["repeat"] == r.cache["hits"] == hits > 10
    assert r.cache["model_calls"] == r.cache["tiers"]["miss"]["requests"] == 60 - hits == r.workload["new"]
    assert exact["latency_ms"] is not None and exact["rate"] == round(hits / 60, 4)
    assert r.batch_size is not None and r.batch_size.inputs == r.cache["model_calls"]


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


def _fake_cached_lm() -> FastAPI:
    """Chat that answers a prompt starting with a tier's name as that tier's hit (header on the stream)."""
    app = FastAPI()
    app.state.infopt = None

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> Any:
        prompt = body["messages"][0]["content"]
        tier = prompt.split()[0] if prompt.split()[0] in ("exact", "prompt", "semantic") else None
        headers = {CACHE_HEADER: tier} if tier else {}
        if not body.get("stream"):
            return JSONResponse({"choices": [{"message": {"content": "x"}}], "usage": {"completion_tokens": 1}},
                                headers=headers)

        async def events() -> Any:
            yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": "x"}}]}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return app


@pytest.mark.parametrize("stream", [True, False])
def test_cache_headers_counted_per_tier(live: Any, stream: bool) -> None:
    s = live(_fake_cached_lm())
    texts = [f"{kind} prompt {i}" for i in range(5) for kind in ("exact", "semantic", "none")] + ["prompt x"]
    r = run_loadtest(LoadtestConfig(s.url, model="lm", endpoint="chat", concurrency=2, requests=16, stream=stream,
                                    temperature=0), texts=texts)
    tiers = r.cache["tiers"]
    assert (r.ok, tiers["exact"]["requests"], tiers["semantic"]["requests"], tiers["prompt"]["requests"]) == (
        16, 5, 5, 1)
    assert tiers["miss"]["requests"] == r.cache["model_calls"] == 5 and r.cache["hits"] == 11
    assert not any("temperature" in n for n in r.notes)
    r = run_loadtest(LoadtestConfig(s.url, model="lm", endpoint="chat", requests=3, repeat_share=0.5), texts=texts)
    assert any("--temperature 0" in n for n in r.notes)


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
