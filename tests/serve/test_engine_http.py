"""Completions and chat on the paged engine behind a real uvicorn server (the tiny Llama of conftest.tiny_lm):
continuous batching of concurrent streams, prefix caching across chat turns, n, logprobs, 429, disconnects,
drain, metrics, the `[engine]` table and the official openai client."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch

from infopt.models import LoadedModel
from infopt.serve import BatchingConfig, ModelSpec, ServeCacheConfig, ServeConfig, create_app, load_serve_config
from infopt.serve._engine_config import ServeEngineConfig
from infopt.serve._engine_worker import EngineWorker

SYSTEM = ("you are a careful assistant who answers every question about the weather in paris and london with "
          "short plain sentences and you never make up numbers you do not know and you always say which city "
          "and which day you mean")  # over 40 tokens: two full KV blocks of 16


def config(max_queue: int = 64, timeout_s: float = 30, **engine: Any) -> ServeConfig:
    return ServeConfig(models=(ModelSpec("x", "x"),), batching=BatchingConfig(max_queue=max_queue, timeout_s=timeout_s),
                       cache=ServeCacheConfig(exact=False, prompt=False), engine=ServeEngineConfig(**engine))


def post(server: Any, path: str, body: dict[str, Any], timeout: float = 30) -> httpx.Response:
    return httpx.post(server.url + path, json={"model": "lm", **body}, timeout=timeout)


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return dict(r.json())


def stream(server: Any, sse: Any, path: str, body: dict[str, Any]) -> list[Any]:
    with httpx.stream("POST", server.url + path, json={"model": "lm", **body, "stream": True}, timeout=30) as r:
        assert r.status_code == 200, r.read()
        return list(sse(r))


def wait_until(condition: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class StepGate:
    """Holds the engine's thread before each step until `opened` is set; sleeps `delay_s` per step."""

    def __init__(self, worker: EngineWorker, delay_s: float = 0.0, opened: bool = True) -> None:
        self.opened = threading.Event()
        if opened:
            self.opened.set()
        real = worker.engine.step

        def step() -> Any:
            self.opened.wait(30)
            time.sleep(delay_s)
            return real()

        worker.engine.step = step  # type: ignore[method-assign]


def engine_of(server: Any, name: str = "lm") -> EngineWorker:
    worker = server.state.models[name].generator
    assert isinstance(worker, EngineWorker)
    return worker


def test_concurrent_streams_are_batched_and_equal_their_sequential_answers(
        live: Any, tiny_lm: LoadedModel, sse: Any, one_torch_thread: None) -> None:
    server = live(create_app({"lm": tiny_lm}, config=config()))
    assert httpx.get(server.url + "/v1/models").json()["data"][0]["engine"] == "paged"
    prompts = [f"hello world number {w}" for w in ("one", "two", "three", "four", "five", "six", "seven", "eight")]
    body = {"max_tokens": 16, "temperature": 0}
    alone = [ok(post(server, "/v1/completions", {**body, "prompt": p}))["choices"][0]["text"] for p in prompts]
    tok = copy.deepcopy(tiny_lm.tokenizer)
    ids = tok(prompts[0])["input_ids"]
    with torch.no_grad():
        out = tiny_lm.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     max_new_tokens=16, do_sample=False)
    assert alone[0] == tok.decode(out[0, len(ids):], skip_special_tokens=True)  # greedy = HF generate

    worker = engine_of(server)
    gate = StepGate(worker, opened=False)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(stream, server, sse, "/v1/completions", {**body, "prompt": p}) for p in prompts]
        wait_until(lambda: len(worker._jobs) == 8)
        gate.opened.set()
        events = [f.result(30) for f in futures]
    texts = ["".join(e["choices"][0]["text"] for e in ev[:-1]) for ev in events]
    assert texts == alone
    assert worker.peak_running > 1
    stats = httpx.get(server.url + "/v1/stats").json()["models"]["lm"]
    assert stats["batch_size"]["max"] > 1 and stats["inputs"] == 16
    metrics = httpx.get(server.url + "/metrics").text
    for name in ("infopt_time_to_first_token_seconds_count", "infopt_inter_token_latency_seconds_count",
                 "infopt_e2e_request_latency_seconds_count", "infopt_request_queue_time_seconds_count",
                 "infopt_iteration_tokens_total_count", "infopt_num_requests_running", "infopt_num_requests_waiting",
                 "infopt_kv_cache_usage_perc", "infopt_prefix_cache_queries_total", "infopt_prefix_cache_hits_total",
                 "infopt_num_preemptions_total", "infopt_prompt_tokens_total", "infopt_generation_tokens_total"):
        assert f'{name}{{model="lm"}}' in metrics, name
    assert 'infopt_e2e_request_latency_seconds_count{model="lm"} 16.0' in metrics


def test_next_chat_turn_hits_the_prefix_cache(live: Any, tiny_lm: LoadedModel, one_torch_thread: None) -> None:
    server = live(create_app({"lm": tiny_lm}, config=config()))
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "is it raining"}]
    first = ok(post(server, "/v1/chat/completions", {"messages": messages, "max_tokens": 6, "temperature": 0}))
    assert first["usage"]["prompt_tokens"] > 32 and first["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    turn = [*messages, first["choices"][0]["message"], {"role": "user", "content": "and tomorrow"}]
    second = ok(post(server, "/v1/chat/completions", {"messages": turn, "max_tokens": 6, "temperature": 0}))
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 32 and cached % 16 == 0 and cached < second["usage"]["prompt_tokens"]
    assert engine_of(server).stats.prefix_hits == cached
    assert f'infopt_prefix_cache_hits_total{{model="lm"}} {float(cached)}' in httpx.get(server.url + "/metrics").text


def test_n_choices_with_a_seed_are_reproducible(live: Any, tiny_lm: LoadedModel, sse: Any,
                                                one_torch_thread: None) -> None:
    server = live(create_app({"lm": tiny_lm}, config=config()))
    body = {"prompt": "hello world", "max_tokens": 12, "temperature": 1.0, "seed": 5}
    two = ok(post(server, "/v1/completions", {**body, "n": 2}))
    assert [c["index"] for c in two["choices"]] == [0, 1]
    texts = [c["text"] for c in two["choices"]]
    assert texts[0] != texts[1] and ok(post(server, "/v1/completions", {**body, "n": 2}))["choices"] == two["choices"]
    assert ok(post(server, "/v1/completions", body))["choices"][0]["text"] == texts[0]  # choice i: seed + i
    assert ok(post(server, "/v1/completions", {**body, "seed": 6}))["choices"][0]["text"] == texts[1]
    assert two["usage"]["completion_tokens"] == 24 and two["usage"]["prompt_tokens"] == 4
    events = stream(server, sse, "/v1/completions", {**body, "n": 2})
    assert ["".join(e["choices"][0]["text"] for e in events[:-1] if e["choices"][0]["index"] == i)
            for i in (0, 1)] == texts
    assert sorted(e["choices"][0]["index"] for e in events[:-1] if e["choices"][0]["finish_reason"]) == [0, 1]
    chat = stream(server, sse, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "n": 2,
                                                        "max_tokens": 4, "seed": 1})
    roles = [e["choices"][0]["index"] for e in chat[:-1] if e["choices"][0]["delta"].get("role")]
    assert roles == [0, 1]


def test_logprobs_in_both_shapes(live: Any, tiny_lm: LoadedModel, sse: Any, gated: Any,
                                 one_torch_thread: None) -> None:
    plain, _ = gated(tiny_lm, gated=False)  # a wrapped forward: the engine cannot run it
    server = live(create_app({"lm": tiny_lm, "hf": plain}, config=config()))
    done = ok(post(server, "/v1/completions", {"prompt": "hello world", "max_tokens": 6, "temperature": 0,
                                               "logprobs": 1}))
    lp = done["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["text_offset"]) == 6
    assert all(v <= 0 for v in lp["token_logprobs"]) and lp["text_offset"][0] == 0
    assert lp["top_logprobs"][0] == {lp["tokens"][0]: lp["token_logprobs"][0]}
    ids = copy.deepcopy(tiny_lm.tokenizer)("hello world")["input_ids"]
    with torch.no_grad():
        first = tiny_lm.model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)
    assert lp["token_logprobs"][0] == pytest.approx(float(first.max()), abs=1e-4)  # greedy: the top token

    messages = [{"role": "user", "content": "hello"}]
    chat = {"messages": messages, "max_tokens": 5, "temperature": 0, "logprobs": True}
    reply = ok(post(server, "/v1/chat/completions", chat))
    content = reply["choices"][0]["logprobs"]["content"]
    assert 0 < len(content) == reply["usage"]["completion_tokens"] <= 5
    assert set(content[0]) == {"token", "logprob", "bytes", "top_logprobs"}
    assert content[0]["bytes"] == list(content[0]["token"].encode())
    events = stream(server, sse, "/v1/chat/completions", chat)
    assert [c for e in events[1:-1] for c in e["choices"][0]["logprobs"]["content"]] == content

    models = {m["id"]: m["engine"] for m in httpx.get(server.url + "/v1/models").json()["data"]}
    assert models == {"lm": "paged", "hf": "hf"}
    r = post(server, "/v1/completions", {"model": "hf", "prompt": "hi", "logprobs": 0})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_logprobs"
    hf = ok(post(server, "/v1/completions", {"model": "hf", "prompt": "hi", "max_tokens": 3, "n": 2,
                                             "temperature": 0}))
    assert len(hf["choices"]) == 2 and "prompt_tokens_details" not in hf["usage"]


def test_full_engine_is_429(live: Any, tiny_lm: LoadedModel, one_torch_thread: None) -> None:
    server = live(create_app({"lm": tiny_lm}, config=config(max_queue=2)))
    worker = engine_of(server)
    gate = StepGate(worker, opened=False)
    body = {"prompt": "hi", "max_tokens": 4}
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(post, server, "/v1/completions", body) for _ in range(2)]
        wait_until(lambda: len(worker._jobs) == 2)
        for extra in ({}, {"stream": True}):
            r = post(server, "/v1/completions", {**body, **extra})
            assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
            assert int(r.headers["retry-after"]) >= 1
        gate.opened.set()
        assert [f.result(10).status_code for f in running] == [200, 200]
    r = post(server, "/v1/completions", {**body, "n": 3})  # three choices never fit a queue of two
    assert r.status_code == 429
    assert ok(post(server, "/v1/completions", {**body, "n": 2}))["usage"]["completion_tokens"] == 8


def test_disconnect_aborts_and_frees_the_blocks(live: Any, tiny_lm: LoadedModel, one_torch_thread: None) -> None:
    server = live(create_app({"lm": tiny_lm}, config=config()))
    worker = engine_of(server)
    StepGate(worker, delay_s=0.02)

    def freed() -> bool:
        s = worker.stats
        return not worker._jobs and s.num_running == s.num_waiting == 0 and s.num_free_blocks == s.num_blocks

    body = {"model": "lm", "prompt": "hi", "max_tokens": 100, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        next(r.iter_lines())  # the first event, then the client goes away
    wait_until(freed)
    with pytest.raises(httpx.ReadTimeout):
        post(server, "/v1/completions", {"prompt": "hi", "max_tokens": 100}, timeout=0.3)
    wait_until(freed)
    stats = httpx.get(server.url + "/v1/stats").json()["models"]["lm"]
    assert 0 < stats["completion_tokens"] < 100
    metrics = httpx.get(server.url + "/metrics").text
    assert 'infopt_kv_cache_usage_perc{model="lm"} 0.0' in metrics
    assert 'infopt_rejections_total{model="lm",reason="client_closed"} 1.0' in metrics


def test_drain_finishes_accepted_work_then_aborts_with_503(live: Any, tiny_lm: LoadedModel,
                                                           one_torch_thread: None) -> None:
    for timeout_s in (None, 0.3):
        server = live(create_app({"lm": tiny_lm}, config=config()))
        worker = engine_of(server)
        gate = StepGate(worker, opened=False)
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(post, server, "/v1/completions", {"prompt": "hi", "max_tokens": 4})
            wait_until(lambda w=worker: len(w._jobs) == 1)
            assert server.loop is not None
            drained = asyncio.run_coroutine_threadsafe(server.state.drain(timeout_s), server.loop)
            wait_until(lambda s=server: s.state.status == "draining")
            r = post(server, "/v1/completions", {"prompt": "hi"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
            if timeout_s is None:
                gate.opened.set()
                assert ok(in_flight.result(10))["usage"]["completion_tokens"] == 4
            else:
                r = in_flight.result(10)
                assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
                gate.opened.set()
            drained.result(10)


def test_openai_client_streams_chat_from_the_engine(live: Any, tiny_lm: LoadedModel, one_torch_thread: None) -> None:
    server = live(create_app({"lm": tiny_lm}, config=config()))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=30)
    messages: Any = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hello"}]
    reply = client.chat.completions.create(model="lm", messages=messages, max_tokens=8, temperature=0,
                                           logprobs=True)
    assert reply.choices[0].logprobs is not None and reply.choices[0].logprobs.content is not None
    assert reply.usage is not None and len(reply.choices[0].logprobs.content) == reply.usage.completion_tokens
    chunks = list(client.chat.completions.create(model="lm", messages=messages, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and usage.completion_tokens == reply.usage.completion_tokens
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens >= 16
    done = client.completions.create(model="lm", prompt="hello world", max_tokens=4, temperature=0, logprobs=0, n=2)
    assert len(done.choices) == 2 and done.choices[0].logprobs is not None
    assert len(done.choices[1].logprobs.token_logprobs or []) == 4


def test_engine_table_of_the_config(tmp_path: Path, live: Any, tiny_lm: LoadedModel) -> None:
    from infopt.errors import UserError
    from infopt.serve import toml_reference

    path = tmp_path / "serve.toml"
    path.write_text('[models]\nlm = "x"\n[engine]\nmax_num_seqs = 4\nkv_cache_mb = 64\nenabled = false\n')
    engine = load_serve_config(path).engine
    assert (engine.max_num_seqs, engine.kv_cache_mb, engine.enabled, engine.block_size) == (4, 64, False, 16)
    path.write_text('[models]\nlm = "x"\n[engine]\nmax_seqs = 4\n')
    with pytest.raises(UserError, match="max_seqs"):
        load_serve_config(path)
    with pytest.raises(UserError, match="max_num_seqs"):
        ServeEngineConfig(max_num_seqs=0)
    assert "[engine]" in toml_reference() and "max_num_seqs = 8" in toml_reference()
    server = live(create_app({"lm": tiny_lm}, config=config(enabled=False)))
    assert httpx.get(server.url + "/v1/models").json()["data"][0]["engine"] == "hf"
