"""The semantic tier in a real server (uvicorn on a loopback port, the real default encoder, int8 MiniLM-L3, a tiny
random Llama): paraphrases hit, near misses, other tenants and other models do not; shadow checks tighten or
disable it; two servers sharing a real Redis see each other's entries."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from infopt.models import LoadedModel, Manifest
from infopt.serve import ModelSpec, ServeCacheConfig, ServeConfig, create_app
from infopt.serve._lm_schemas import ChatCompletionRequest
from infopt.serve.cache import CacheRequest
from infopt.serve.cache._semantic_config import SemanticConfig
from infopt.serve.cache._semantic_tier import load_encoder

PARAPHRASE = ("How do I enable 2FA on my account?", "How can I turn on two-factor authentication for my account?")


@pytest.fixture(scope="module", autouse=True)
def encoder() -> Any:
    """The real encoder, loaded once: servers built from config in this module reuse it."""
    return load_encoder(SemanticConfig().encoder)


def _app(lm: LoadedModel, **cache: Any) -> Any:
    semantic = SemanticConfig(**{"enabled": True, "shadow_share": 0.0, **cache.pop("semantic", {})})
    config = ServeCacheConfig(**{"backend": "memory", **cache}, semantic=semantic)
    return create_app({"lm": lm}, config=ServeConfig(models=(ModelSpec("x", "x"),), cache=config))


def _body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "lm", "messages": [{"role": "system", "content": "You are a support bot."},
                                        {"role": "user", "content": text}],
            "temperature": 0, "max_tokens": 6, **extra}


def _chat(server: Any, text: str, **headers: str) -> httpx.Response:
    r = httpx.post(server.url + "/v1/chat/completions", json=_body(text), headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return r


def _tier(server: Any) -> Any:
    return server.app.state.infopt_cache.semantic


def _semantic_stats(server: Any) -> dict[str, Any]:
    return dict(httpx.get(server.url + "/v1/cache/stats").json()["semantic"])


def _until(check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _content(r: httpx.Response) -> str:
    return str(r.json()["choices"][0]["message"]["content"])


def test_paraphrase_hits_near_misses_and_other_tenants_do_not(live: Any, tiny_lm: LoadedModel, sse: Any) -> None:
    server = live(_app(tiny_lm))
    first = _chat(server, PARAPHRASE[0])
    assert "x-infopt-cache" not in first.headers
    hit = _chat(server, PARAPHRASE[1])
    assert hit.headers["x-infopt-cache"] == "semantic" and hit.json()["infopt"]["cache"] == "semantic"
    assert _content(hit) == _content(first) and hit.json()["id"] != first.json()["id"]
    assert "x-infopt-cache" not in _chat(server, "How do I disable 2FA on my account?").headers
    _chat(server, "Can I add 2 users to my team plan?")
    assert _chat(server, "Can I add two users to my team plan?").headers["x-infopt-cache"] == "semantic"
    assert "x-infopt-cache" not in _chat(server, "Can I add 3 users to my team plan?").headers
    assert "x-infopt-cache" not in _chat(server, PARAPHRASE[1], **{"X-Tenant": "other"}).headers
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=_body(PARAPHRASE[1], stream=True)) as r:
        assert r.headers["x-infopt-cache"] == "semantic"
        events = sse(r)
    assert events[0]["infopt"]["cache"] == "semantic" and events[-1] == "[DONE]"
    stats = _semantic_stats(server)
    threshold = SemanticConfig().load_calibration().threshold  # the bundled one
    assert stats["hits"] == 3 and stats["vetoed"] >= 2 and stats["threshold"] == threshold
    metrics = httpx.get(server.url + "/metrics").text
    assert 'infopt_cache_hits_total{tier="semantic"} 3.0' in metrics
    assert f"infopt_cache_semantic_threshold {threshold}" in metrics
    assert 'infopt_cache_entries{tier="semantic"}' in metrics
    assert httpx.post(server.url + "/v1/cache/purge").json()["purged"] >= 1
    assert _semantic_stats(server)["indexed"] == 0


def _put_wrong_answer(server: Any, text: str) -> None:
    """A wrong answer to `text` straight into the server's semantic tier (what a false hit would serve)."""
    fp = server.app.state.infopt_cache.fingerprint(server.state.models["lm"])
    body = ChatCompletionRequest.model_validate(_body(text)).model_dump()
    wrong = {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "lm",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "a wrong cached answer"},
                          "finish_reason": "stop", "logprobs": None}],
             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    assert _tier(server).put(CacheRequest("/v1/chat/completions", body, fp, None), wrong)


def test_shadow_checks_agree_then_tighten(live: Any, tiny_lm: LoadedModel) -> None:
    server = live(_app(tiny_lm, exact=False, prompt=False, semantic={"shadow_share": 1.0}))
    _chat(server, "Where is my order?")
    again = _chat(server, "Where is my order?")  # the same prompt: a semantic hit that the model agrees with
    assert again.headers["x-infopt-cache"] == "semantic"
    _until(lambda: _semantic_stats(server)["shadow"]["total_verified"] == 1)
    assert _semantic_stats(server)["shadow"]["total_disagreements"] == 0
    _put_wrong_answer(server, PARAPHRASE[0])
    wrong = _chat(server, PARAPHRASE[1])
    assert wrong.headers["x-infopt-cache"] == "semantic" and _content(wrong) == "a wrong cached answer"
    _until(lambda: _semantic_stats(server)["shadow"]["total_disagreements"] == 1)
    stats = _semantic_stats(server)
    tightened = SemanticConfig().load_calibration().threshold + 0.02  # the bundled threshold, one step stricter
    assert stats["threshold"] == pytest.approx(tightened) and stats["shadow"]["tightenings"] == 1
    assert stats["shadow_runs"]["disagreed"] == 1 and stats["serving"] is True
    metrics = httpx.get(server.url + "/metrics").text
    assert 'infopt_cache_semantic_shadow_checks_total{result="disagree"} 1.0' in metrics
    assert 'infopt_cache_semantic_shadow_checks_total{result="agree"} 1.0' in metrics
    gauge = next(line for line in metrics.splitlines() if line.startswith("infopt_cache_semantic_threshold "))
    assert float(gauge.split()[1]) == pytest.approx(tightened) and "infopt_cache_semantic_false_hit_rate_ucb" in metrics


def test_shadow_disagreement_disables_hits(live: Any, tiny_lm: LoadedModel) -> None:
    server = live(_app(tiny_lm, semantic={"shadow_share": 1.0, "shadow_action": "disable"}))
    _put_wrong_answer(server, PARAPHRASE[0])
    assert _chat(server, PARAPHRASE[1]).headers["x-infopt-cache"] == "semantic"
    _until(lambda: _semantic_stats(server)["serving"] is False)
    assert "x-infopt-cache" not in _chat(server, "How could I switch on two-factor authentication?").headers
    assert "infopt_cache_semantic_disabled 1.0" in httpx.get(server.url + "/metrics").text


# ---------------------------------------------------------------- two servers, one Redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A redis-server of this test's own on a free port."""
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary")
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _until(lambda: _ping(url), 10)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _other_lm(tiny_lm: LoadedModel) -> LoadedModel:
    """tiny_lm's architecture with other weights (seed 1): another model fingerprint under the same name."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = AutoModelForCausalLM.from_config(LlamaConfig(**tiny_lm.model.config.to_dict()),
                                                 dtype=torch.float32).eval()
    return LoadedModel(model, tiny_lm.tokenizer, Manifest(name="tiny-lm-2", task="causal-lm"))


def test_two_servers_share_semantic_entries_through_redis(live: Any, tiny_lm: LoadedModel, redis_url: str) -> None:
    shared = {"backend": "redis", "redis_url": redis_url, "namespace": f"sem-{uuid.uuid4().hex[:8]}"}
    a, b = live(_app(tiny_lm, **shared)), live(_app(tiny_lm, **shared))
    other = live(_app(_other_lm(tiny_lm), **shared))
    for server in (b, other):  # their Redis listeners are subscribed before a adds anything
        _until(lambda s=server: bool(_tier(s).backend.back.listening))
    first = _chat(a, PARAPHRASE[0])
    for server in (b, other):  # both index a's entry from its Redis event
        _until(lambda s=server: _semantic_stats(s)["synced"] == 1)
    hit = _chat(b, PARAPHRASE[1])
    assert hit.headers["x-infopt-cache"] == "semantic" and _content(hit) == _content(first)
    assert "x-infopt-cache" not in _chat(other, PARAPHRASE[1]).headers  # another model fingerprint
    assert httpx.post(a.url + "/v1/cache/purge").json()["purged"] >= 1
    _until(lambda: _semantic_stats(b)["indexed"] == 0)  # a's purge reached b's index
    assert "x-infopt-cache" not in _chat(b, "How can I turn on 2FA for my account?").headers


def test_classify_when_opted_in_with_shadow_checks(live: Any, tiny_bert_classifier: LoadedModel) -> None:
    cache = ServeCacheConfig(backend="memory", semantic=SemanticConfig(enabled=True, endpoints=("classify",),
                                                                       shadow_share=1.0))
    server = live(create_app({"clf": tiny_bert_classifier}, config=ServeConfig(models=(ModelSpec("x", "x"),),
                                                                              cache=cache)))

    def classify(text: str) -> httpx.Response:
        r = httpx.post(server.url + "/v1/classify", json={"model": "clf", "input": text}, timeout=30)
        assert r.status_code == 200, r.text
        return r

    first = classify("How do I reset my password?")
    hit = classify("How can I reset my password?")
    assert hit.headers["x-infopt-cache"] == "semantic" and hit.json()["data"] == first.json()["data"]
    _until(lambda: _semantic_stats(server)["shadow"]["total_verified"] == 1)  # the classifier ran again
