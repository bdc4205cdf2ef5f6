"""The exact and prompt caches in front of a real server: hits never reach the model, tenants are isolated,
streams replay, admin endpoints, corrupt entries are misses, SQLite persists across restarts, a changed model
folder never serves an old answer, and the semantic hook."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import torch
from transformers import PreTrainedTokenizerBase

from infopt.models import LoadedModel, Manifest, save_model
from infopt.serve import ModelSpec, ServeCacheConfig, ServeConfig, create_app
from infopt.serve.cache import CacheHit, CacheRequest


def _config(tmp_path: Path, **cache: Any) -> ServeConfig:
    return ServeConfig(models=(ModelSpec("x", "x"),), cache=ServeCacheConfig(path=str(tmp_path / "c.sqlite"), **cache))


def _classify(url: str, text: Any = "a good film", **kw: Any) -> httpx.Response:
    r = httpx.post(url + "/v1/classify", json={"model": "clf", "input": text}, timeout=30, **kw)
    assert r.status_code == 200, r.text
    return r


def test_exact_hit_never_reaches_the_model(live: Any, gated: Any, tiny_bert_classifier: LoadedModel,
                                           tmp_path: Path) -> None:
    model, gate = gated(tiny_bert_classifier, gated=False)
    server = live(create_app({"clf": model}, config=_config(tmp_path)))
    first = _classify(server.url, ["a good film", "bad"])
    assert "x-infopt-cache" not in first.headers and "infopt" not in first.json()
    calls = len(gate.batch_sizes)
    second = _classify(server.url, ["  a good\n film", "bad "])  # whitespace-normalised: the same request
    assert second.headers["x-infopt-cache"] == "exact"
    assert second.json()["infopt"]["cache"] == "exact" and second.json()["infopt"]["age_s"] >= 0
    assert second.json()["data"] == first.json()["data"]
    reordered = httpx.post(server.url + "/v1/classify", content=b'{"input": ["a good film", "bad"], "model": "clf"}',
                           headers={"content-type": "application/json"})
    assert reordered.headers["x-infopt-cache"] == "exact"
    assert len(gate.batch_sizes) == calls  # the model was not called again
    assert _classify(server.url, "another text").headers.get("x-infopt-cache") is None
    assert len(gate.batch_sizes) == calls + 1
    stats = httpx.get(server.url + "/v1/stats").json()["cache"]
    assert stats["tiers"]["exact"]["hits"] == 2 and stats["backend"]["up"] and stats["saved_s"] > 0
    metrics = httpx.get(server.url + "/metrics").text
    assert 'infopt_cache_hits_total{tier="exact"} 2.0' in metrics
    assert 'infopt_cache_backend_up{backend="sqlite"} 1.0' in metrics and "infopt_cache_entries" in metrics
    assert "infopt_cache_saved_seconds_total" in metrics and "infopt_cache_corrupt_entries_total" in metrics


def test_tenants_are_isolated_unless_shared(live: Any, tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    server = live(create_app({"clf": tiny_bert_classifier}, config=_config(tmp_path)))
    _classify(server.url, headers={"X-Tenant": "a"})
    assert _classify(server.url, headers={"X-Tenant": "a"}).headers["x-infopt-cache"] == "exact"
    for other in ({"X-Tenant": "b"}, {"Authorization": "Bearer sk-1"}, {}):
        assert "x-infopt-cache" not in _classify(server.url, headers=other).headers, other
    assert _classify(server.url, headers={"Authorization": "Bearer sk-1"}).headers["x-infopt-cache"] == "exact"
    assert "x-infopt-cache" not in _classify(server.url, headers={"Authorization": "Bearer sk-2"}).headers
    shared = live(create_app({"clf": tiny_bert_classifier}, config=_config(tmp_path / "s", shared_by_default=True)))
    _classify(shared.url, "shared text", headers={"X-Tenant": "a"})
    assert _classify(shared.url, "shared text", headers={"X-Tenant": "b"}).headers["x-infopt-cache"] == "exact"


def test_embeddings_user_field_is_the_tenant(live: Any, tiny_bert_embedder: LoadedModel, tmp_path: Path) -> None:
    server = live(create_app({"emb": tiny_bert_embedder}, config=_config(tmp_path)))

    def embed(**extra: Any) -> httpx.Response:
        return httpx.post(server.url + "/v1/embeddings", json={"model": "emb", "input": "hi", **extra})

    first = embed(user="u1")
    assert embed(user="u1").headers["x-infopt-cache"] == "exact"
    assert embed(user="u1").json()["data"] == first.json()["data"]
    assert "x-infopt-cache" not in embed(user="u2").headers
    assert "x-infopt-cache" not in embed(user="u1", encoding_format="base64").headers  # another answer


def _chat(url: str, **extra: Any) -> httpx.Response:
    body = {"model": "lm", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "max_tokens": 5, "temperature": 0, **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


def test_prompt_tier_and_stream_replay(live: Any, tiny_lm: LoadedModel, tmp_path: Path, sse: Any) -> None:
    server = live(create_app({"lm": tiny_lm}, config=_config(tmp_path)))
    first = _chat(server.url)
    assert first.status_code == 200 and "x-infopt-cache" not in first.headers
    text = first.json()["choices"][0]["message"]["content"]
    developer = [{"role": "developer", "content": "be   brief"}, {"role": "user", "content": [{"type": "text",
                                                                                               "text": "hi"}]}]
    again = _chat(server.url, messages=developer, max_tokens=None, max_completion_tokens=5)
    assert again.headers["x-infopt-cache"] == "prompt", again.text
    assert again.json()["choices"][0]["message"]["content"] == text and again.json()["id"] != first.json()["id"]
    for _ in range(2):  # a sample (temperature 1, no seed) is never cached
        assert "x-infopt-cache" not in _chat(server.url, temperature=1).headers
    with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=60, json={
            "model": "lm", "messages": [{"role": "user", "content": "stream me"}], "max_tokens": 5, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert "x-infopt-cache" not in r.headers
        streamed = sse(r)
    body = {"model": "lm", "messages": [{"role": "user", "content": "stream me"}], "max_tokens": 5, "temperature": 0}
    with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=60,
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.headers["x-infopt-cache"] == "exact"
        replayed = sse(r)

    def joined(events: list[Any]) -> str:
        return "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"])

    assert replayed[-1] == "[DONE]" and replayed[-2]["usage"] == streamed[-2]["usage"]
    assert joined(replayed) == joined(streamed) and replayed[0]["infopt"]["cache"] == "exact"
    plain = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)  # the stored assembled body
    assert plain.headers["x-infopt-cache"] == "exact"
    assert plain.json()["choices"][0]["message"]["content"] == joined(streamed)


def test_a_chat_hit_runs_no_template_or_tokenizer(live: Any, tiny_lm: LoadedModel, tmp_path: Path,
                                                  monkeypatch: Any) -> None:
    from infopt.serve._served import ServedModel

    calls: list[int] = []
    real = ServedModel.chat_ids

    def counted(self: ServedModel, messages: Any) -> list[int]:
        calls.append(1)
        return real(self, messages)

    monkeypatch.setattr(ServedModel, "chat_ids", counted)
    server = live(create_app({"lm": tiny_lm}, config=_config(tmp_path)))
    first = _chat(server.url)
    assert first.status_code == 200 and len(calls) == 1
    again = _chat(server.url)
    assert again.headers["x-infopt-cache"] == "exact" and len(calls) == 1, "a hit rendered the chat template"
    assert again.json()["choices"] == first.json()["choices"]


def test_a_chat_hit_is_answered_before_routing_and_a_miss_looked_up_once(live: Any, tiny_lm: LoadedModel,
                                                                         tmp_path: Path, monkeypatch: Any) -> None:
    from infopt.serve import _lm_routes

    routed: list[int] = []
    real = _lm_routes._answer

    async def counted(*args: Any, **kwargs: Any) -> Any:
        routed.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(_lm_routes, "_answer", counted)
    server = live(create_app({"lm": tiny_lm}, config=_config(tmp_path)))
    first = _chat(server.url)
    assert first.status_code == 200 and routed == [1]
    again = _chat(server.url)
    assert again.headers["x-infopt-cache"] == "exact" and routed == [1], "the hit went through the router"
    exact = server.app.state.infopt_cache.stack.stats()["tiers"]["exact"]
    assert (exact["lookups"], exact["hits"], exact["misses"]) == (2, 1, 1)  # the miss was looked up once
    bad = _chat(server.url, max_tokens="many")  # left to the route, which validates it
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert _chat(server.url, logprobs=True).headers.get("x-infopt-cache") is None and routed == [1, 1]


def test_admin_purge_and_invalidate(live: Any, tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    server = live(create_app({"clf": tiny_bert_classifier}, config=_config(tmp_path)))
    _classify(server.url, "tagged", headers={"X-Infopt-Cache-Tags": "faq, v1"})
    _classify(server.url, "plain")
    r = httpx.post(server.url + "/v1/cache/invalidate", json={"tag": "faq"})
    assert r.status_code == 200 and r.json()["invalidated"] >= 1
    assert "x-infopt-cache" not in _classify(server.url, "tagged").headers
    assert _classify(server.url, "plain").headers["x-infopt-cache"] == "exact"
    assert httpx.post(server.url + "/v1/cache/invalidate", json={"model": "clf"}).json()["invalidated"] >= 1
    assert "x-infopt-cache" not in _classify(server.url, "plain").headers
    assert httpx.post(server.url + "/v1/cache/purge").json()["purged"] >= 1
    assert "x-infopt-cache" not in _classify(server.url, "plain").headers
    assert httpx.get(server.url + "/v1/cache/stats").json()["tiers"]["exact"]["entries"] == 1
    bad = httpx.post(server.url + "/v1/cache/invalidate", json={"tag": "a", "model": "clf"})
    assert bad.status_code == 400
    assert httpx.post(server.url + "/v1/cache/invalidate", json={"model": "nope"}).status_code == 400
    public = ServeConfig(models=(ModelSpec("x", "x"),), host="0.0.0.0", cache=ServeCacheConfig(backend="memory"))
    closed = live(create_app({"clf": tiny_bert_classifier}, config=public))  # not loopback: admin off by default
    assert httpx.post(closed.url + "/v1/cache/purge").status_code == 404


def test_corrupt_entry_is_a_miss(live: Any, tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    server = live(create_app({"clf": tiny_bert_classifier}, config=_config(tmp_path)))
    first = _classify(server.url)
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("UPDATE entries SET value = ?", (b"\x00garbage{",)).rowcount >= 1
    again = _classify(server.url)
    assert "x-infopt-cache" not in again.headers and again.json()["data"] == first.json()["data"]
    assert httpx.get(server.url + "/v1/stats").json()["cache"]["tiers"]["exact"]["corrupt"] >= 1
    assert _classify(server.url).headers["x-infopt-cache"] == "exact"  # stored anew


def _perturbed(loaded: LoadedModel) -> LoadedModel:
    model = type(loaded.model)(loaded.model.config).eval()
    model.load_state_dict(loaded.model.state_dict())
    with torch.no_grad():
        model.classifier.bias.add_(torch.tensor([3.0, -3.0]))
    return LoadedModel(model, loaded.tokenizer, Manifest(name="tiny-clf", task="classification",
                                                         labels=["negative", "positive"]))


def test_sqlite_persists_and_a_changed_model_never_serves_old_answers(
        live: Any, tiny_bert_classifier: LoadedModel, tokenizer: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    folder = tmp_path / "clf"
    save_model(LoadedModel(tiny_bert_classifier.model, tokenizer, Manifest(
        name="tiny-clf", task="classification", labels=["negative", "positive"])), folder)
    config = ServeConfig(models=(ModelSpec("clf", str(folder)),),
                         cache=ServeCacheConfig(path=str(tmp_path / "c.sqlite")))

    def serve() -> Any:
        return live(create_app(config)).wait_ready()

    one = serve()
    old = _classify(one.url).json()
    one.stop()
    two = serve()
    assert _classify(two.url).headers["x-infopt-cache"] == "exact"  # survived the restart
    two.stop()
    save_model(_perturbed(tiny_bert_classifier), folder, overwrite=True)  # same name, same folder, new weights
    three = serve()
    new = _classify(three.url)
    assert "x-infopt-cache" not in new.headers
    assert new.json()["data"][0]["probabilities"] != old["data"][0]["probabilities"]


class _Semantic:
    """A stand-in semantic tier: answers one prompt, records puts; `broken` raises on every call."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.puts: list[CacheRequest] = []

    def get(self, request: CacheRequest) -> CacheHit | None:
        if self.broken:
            raise RuntimeError("semantic tier down")
        if request.body["input"] == "near duplicate":
            return CacheHit({"object": "list", "model": "clf", "data": []}, "semantic", "k", 0.0, 1.5, 0.1, False)
        return None

    def put(self, request: CacheRequest, response: Any, *, model_s: float = 0.0, tags: Any = (),
            shared: bool | None = None) -> bool:
        if self.broken:
            raise RuntimeError("semantic tier down")
        self.puts.append(request)
        return True


def test_semantic_hook_and_a_failing_cache_is_a_miss(live: Any, tiny_bert_classifier: LoadedModel,
                                                     tmp_path: Path) -> None:
    semantic = _Semantic()
    server = live(create_app({"clf": tiny_bert_classifier}, config=_config(tmp_path), semantic=semantic))
    hit = _classify(server.url, "near duplicate")
    assert hit.headers["x-infopt-cache"] == "semantic" and hit.json()["infopt"] == {"cache": "semantic", "age_s": 1.5}
    _classify(server.url, "new text", headers={"X-Tenant": "t"})
    assert semantic.puts[-1].tenant == "tenant:t" and semantic.puts[-1].endpoint == "/v1/classify"
    assert httpx.get(server.url + "/v1/stats").json()["cache"]["semantic"]["hits"] == 1
    broken = live(create_app({"clf": tiny_bert_classifier}, config=_config(tmp_path / "b", exact=False, prompt=False),
                             semantic=_Semantic(broken=True)))
    for _ in range(2):
        assert "x-infopt-cache" not in _classify(broken.url, "near duplicate").headers
    assert httpx.get(broken.url + "/v1/stats").json()["cache"]["errors"] >= 2


def test_no_cache_serves_without_caches(live: Any, tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    server = live(create_app({"clf": tiny_bert_classifier}, config=_config(tmp_path, exact=False, prompt=False)))
    for _ in range(2):
        assert "x-infopt-cache" not in _classify(server.url).headers
    assert httpx.get(server.url + "/v1/stats").json()["cache"]["enabled"] is False
