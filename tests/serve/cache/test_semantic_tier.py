"""The semantic tier adapter (logic, with a hashed bag-of-words encoder): what is embedded, scopes and namespaces,
envelopes, invalidation and sync by backend events, stats; its config; bounded shadow runs."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest

from infopt.errors import UserError
from infopt.serve import ServeCacheConfig, load_serve_config, serve_config
from infopt.serve._shadow_run import ShadowRuns
from infopt.serve.cache import CacheEvent, CacheHit, CacheRequest, MemoryBackend
from infopt.serve.cache._backend_sqlite import SQLiteBackend
from infopt.serve.cache._calibrate import Calibration
from infopt.serve.cache._semantic import RECENT, SemanticCache
from infopt.serve.cache._semantic_config import SemanticConfig, bundled_calibration
from infopt.serve.cache._semantic_tier import (
    SemanticCacheHit,
    SemanticResponseTier,
    answers_agree,
    build_semantic_tier,
    query_of,
)
from infopt.serve.cache._shadow import ShadowVerifier
from infopt.serve.cache._store import Entry

from .conftest import BagEncoder  # type: ignore[import-not-found]

CHAT = "/v1/chat/completions"




def tier(backend: MemoryBackend | None = None, shadow: ShadowVerifier | None = None,
         **kw: Any) -> SemanticResponseTier:
    calibration = Calibration(0.6, math.inf, 0.01, 0.95)
    cache = SemanticCache(BagEncoder(), None, calibration, None, shadow=shadow)  # type: ignore[arg-type]
    return SemanticResponseTier(backend or MemoryBackend(), cache, **kw)


def chat(text: str, *, system: str = "Be brief.", fp: str = "fp", tenant: str | None = "t1",
         **body: Any) -> CacheRequest:
    messages = [{"role": "system", "content": system, "name": None}, {"role": "user", "content": text, "name": None}]
    return CacheRequest(CHAT, {"model": "lm", "messages": messages, "temperature": 0, "max_tokens": 8, **body},
                        fp, tenant)


def answer(text: str) -> dict[str, Any]:
    return {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def test_what_is_embedded() -> None:
    text, context = query_of(CHAT, chat("  Where is   my order? ").body) or ("", {})
    assert text == "Where is my order?" and context["messages"] == [{"role": "system", "content": "Be brief."}]
    assert context["max_tokens"] == 8 and "prompt" not in context
    assistant_last = {"model": "lm", "messages": [{"role": "user", "content": "hi"},
                                                  {"role": "assistant", "content": "hello"}]}
    assert query_of(CHAT, assistant_last) is None
    assert query_of("/v1/completions", {"model": "lm", "prompt": ["Once upon"]}) == (
        "Once upon", {"model": "lm", "temperature": 1.0, "top_p": 1.0, "n": 1})
    assert query_of("/v1/classify", {"model": "c", "input": ["a", "b"]}) is None
    assert query_of("/v1/classify", {"model": "c", "input": "great", "truncate": False})[0] == "great"  # type: ignore[index]


def test_paraphrase_hits_only_in_its_namespace() -> None:
    t = tier()
    assert t.put(chat("Where is my order?"), answer("Tracking link."), model_s=0.5)
    hit = t.get(chat("where is my order"))
    assert isinstance(hit, SemanticCacheHit) and hit.tier == "semantic" and hit.response == answer("Tracking link.")
    assert hit.model_s == 0.5 and not hit.shared and hit.cached_prompt == "Where is my order?"
    for other in (chat("Where is my order?", tenant="t2"), chat("Where is my order?", fp="fp2"),
                  chat("Where is my order?", system="Be verbose."), chat("Where is my order?", max_tokens=9)):
        assert t.get(other) is None
    nondeterministic = chat("Where is my order?", temperature=0.7)
    assert t.get(nondeterministic) is None and not t.put(nondeterministic, answer("x"))
    assert t.stats()["skipped"] == 1


def test_shared_entries_and_opt_in_endpoints() -> None:
    t = tier(endpoints=("/v1/classify",))
    assert not t.put(chat("Where is my order?"), answer("x"))
    clf = CacheRequest("/v1/classify", {"model": "c", "input": "I love this phone", "truncate": False}, "fp", "a")
    assert t.put(clf, {"data": [{"label": "positive"}]}, shared=True)
    hit = t.get(CacheRequest("/v1/classify", {"model": "c", "input": "i love this phone!", "truncate": False},
                             "fp", "someone else"))
    assert hit is not None and hit.shared


def test_corrupt_or_foreign_entries_are_misses() -> None:
    backend = MemoryBackend()
    t = tier(backend)
    t.put(chat("Where is my order?"), answer("a"))
    key = next(iter(backend._items))
    data = bytearray(backend._items[key][0])
    data[-5] ^= 1
    backend.put(key, bytes(data), None, ())
    assert t.get(chat("where is my order")) is None and t.stats()["corrupt"] == 1
    assert key not in backend._items  # a corrupt entry is deleted


def test_invalidation_drops_index_entries() -> None:
    t = tier()
    t.put(chat("Where is my order?"), answer("a"), tags=("faq",))
    t.put(chat("How do I reset my password?"), answer("b"))
    t.put(chat("Where is my order?", fp="fp2"), answer("c"))
    assert t.stats()["indexed"] == 3 and t.stats()["entries"] == 3
    assert t.invalidate_tag("faq") == 1 and t.get(chat("where is my order")) is None
    assert t.invalidate_model("fp2") == 1 and t.stats()["indexed"] == 1
    assert t.purge() == 1
    stats = t.stats()
    assert stats["indexed"] == 0 and stats["entries"] == 0
    assert {"lookups", "hits", "vetoed", "below_threshold", "threshold", "entries"} <= set(stats)


def test_another_process_entries_are_indexed_from_events() -> None:
    backend = MemoryBackend()
    a, b = tier(backend, sync=False), tier(backend)
    a.put(chat("Where is my order?"), answer("from a"))
    key = next(iter(backend._items))
    assert b.get(chat("where is my order")) is None  # b has not seen it
    backend._emit(CacheEvent("put", key=key, local=False))  # as Redis pub/sub hands it over
    deadline = time.monotonic() + 10
    while b.stats()["synced"] < 1 and time.monotonic() < deadline:  # the indexer thread embeds it
        time.sleep(0.01)
    hit = b.get(chat("where is my order"))
    assert hit is not None and hit.response == answer("from a") and b.stats()["synced"] == 1
    backend._emit(CacheEvent("invalidate", tag="semantic:model:fp", local=False))
    assert b.stats()["indexed"] == 0
    b.close()


def _wait_synced(t: SemanticResponseTier, n: int) -> None:
    deadline = time.monotonic() + 10
    while t.stats()["synced"] < n and time.monotonic() < deadline:
        time.sleep(0.01)


class _CountingEncoder(BagEncoder):  # type: ignore[misc]
    def __init__(self, name: str = "bag") -> None:
        self.name, self.calls = name, 0

    def encode(self, texts: list[str]) -> Any:
        self.calls += len(texts)
        return super().encode(texts)


def test_a_prompt_is_embedded_once_per_lookup_and_its_put() -> None:
    encoder = _CountingEncoder()
    cache = SemanticCache(encoder, None, Calibration(0.6, math.inf, 0.01, 0.95), None)  # type: ignore[arg-type]
    t = SemanticResponseTier(MemoryBackend(), cache)
    t.put(chat("Where is my order?", tenant="other"), answer("x"), shared=True)  # both scopes have an index
    encoder.calls = 0
    request = chat("How do I reset my password?")
    assert t.get(request) is None  # looked up in the tenant's scope, then the shared one
    assert t.put(request, answer("Reset link."))  # the answer of the miss: indexed without a second run
    assert encoder.calls == 1
    for i in range(RECENT + 1):  # the memory is bounded
        cache.embed(f"prompt {i}")
    assert len(cache._recent) == RECENT and "prompt 0" not in cache._recent


def test_a_restarted_tier_indexes_what_its_sqlite_file_holds(tmp_path: Path) -> None:
    first = SQLiteBackend(tmp_path / "cache.db")
    tier(first).put(chat("Where is my order?"), answer("kept"))
    first.close()
    calibration = Calibration(0.6, math.inf, 0.01, 0.95)
    same, other = _CountingEncoder(), _CountingEncoder("bag-v2")
    for encoder, reembedded in ((same, 0), (other, 1)):
        cache = SemanticCache(encoder, None, calibration, None)  # type: ignore[arg-type]
        restarted = SemanticResponseTier(SQLiteBackend(tmp_path / "cache.db"), cache)
        _wait_synced(restarted, 1)
        encoder.calls = 0
        hit = restarted.get(chat("where is my order"))
        assert hit is not None and hit.response == answer("kept")
        # the stored float16 vector is used by the same encoder; another encoder embeds the prompt again
        assert restarted.stats()["reembedded"] == reembedded and encoder.calls == 1  # the query only
        restarted.close()


def test_a_reconnected_listener_indexes_what_it_missed() -> None:
    backend = MemoryBackend()
    b = tier(backend)
    tier(backend, sync=False).put(chat("Where is my order?"), answer("while away"))  # b hears no event of it
    b.put(chat("How do I reset my password?"), answer("b's own"))
    backend._emit(CacheEvent("resync", local=False))
    _wait_synced(b, 1)
    assert b.stats()["synced"] == 1 and b.get(chat("where is my order")) is not None  # b's own is not re-read
    b.close()


def test_a_corrupt_stored_vector_is_embedded_again() -> None:
    backend = MemoryBackend()
    tier(backend, sync=False).put(chat("Where is my order?"), answer("a"))
    key = next(iter(backend._items))
    entry = Entry.decode(backend._items[key][0], key)
    payload = {**json.loads(entry.payload), "vec": "not base64!"}
    forged = Entry.make(key, entry.tier, entry.fingerprint, entry.scope, entry.tags, 60.0, 0.0, payload)
    backend.put(key, forged.encode(), forged.expires, forged.index_tags)
    t = tier(backend)
    _wait_synced(t, 1)
    assert t.stats()["reembedded"] == 1 and t.get(chat("where is my order")) is not None
    t.close()


def test_the_index_keeps_at_most_max_indexed_prompts() -> None:
    t = tier(max_indexed=2)
    for q in ("Where is my order?", "How do I reset my password?", "Can I pay by card?"):
        t.put(chat(q), answer(q))
    stats = t.stats()
    assert stats["indexed"] == 2 and stats["evicted_from_index"] == 1 and stats["entries"] == 3
    assert t.get(chat("where is my order")) is None  # the oldest left the index (its entry stays stored)
    assert t.get(chat("can i pay by card")) is not None


def test_shadow_stats_and_json_safe_threshold() -> None:
    shadow = ShadowVerifier(0.6, share=1.0, action="disable")
    t = tier(shadow=shadow)
    t.put(chat("Where is my order?"), answer("a"))
    hit = t.get(chat("where is my order"))
    assert isinstance(hit, SemanticCacheHit) and hit.verify is True
    t.record(False)
    stats = t.stats()
    json.dumps(stats, allow_nan=False)
    assert stats["serving"] is False and stats["shadow"]["total_disagreements"] == 1
    assert t.get(chat("where is my order")) is None


def test_answers_agree() -> None:
    assert answers_agree(CHAT, answer("Yes,  you can."), answer("Yes, you can. "))
    assert not answers_agree(CHAT, answer("Yes"), answer("No"))
    assert answers_agree("/v1/completions", {"choices": [{"text": "a b"}]}, {"choices": [{"text": "a  b"}]})
    assert not answers_agree("/v1/classify", {"data": [{"label": "pos"}]}, {"data": [{"label": "neg"}]})
    assert not answers_agree(CHAT, {"choices": []}, answer("x"))


def test_config_checks(tmp_path: Path) -> None:
    assert SemanticConfig().paths == ("/v1/completions", "/v1/chat/completions") and not SemanticConfig().enabled
    assert SemanticConfig().load_calibration().encoder == "minilm-l3:onnx-int8"
    assert SemanticConfig(encoder="onnx-int8").encoder == "minilm-l3:onnx-int8"  # a bare variant: the default model's
    assert SemanticConfig(encoder="minilm-l6:onnx-int8").load_calibration().encoder == "minilm-l6:onnx-int8"
    for bad in ({"endpoints": ["embeddings"]}, {"shadow_share": 1.5}, {"shadow_action": "ignore"},
                {"encoder": "int4"}, {"encoder": "minilm-l12:onnx-int8"}, {"max_false_hit_rate": 0}, {"endpoints": []}):
        with pytest.raises(UserError):
            SemanticConfig(**bad)
    with pytest.raises(UserError, match=re.escape("infopt cache calibrate PAIRS.jsonl --max-false-hit-rate 0.005")):
        SemanticConfig(max_false_hit_rate=0.005).load_calibration()
    with pytest.raises(UserError, match="ships no calibration for the encoder 'minilm-l3:fp32'"):
        SemanticConfig(encoder="fp32").load_calibration()
    l6 = str(bundled_calibration("minilm-l6:onnx-int8"))
    with pytest.raises(UserError, match="fitted on encoder 'minilm-l6:onnx-int8', not 'minilm-l3:onnx-int8'"):
        SemanticConfig(calibration=l6).load_calibration()
    with pytest.raises(UserError, match=r"none\.json does not exist"):
        SemanticConfig(calibration=str(tmp_path / "none.json")).load_calibration()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="not a semantic cache calibration"):
        SemanticConfig(calibration=str(tmp_path / "bad.json")).load_calibration()
    assert SemanticConfig(max_false_hit_rate=0.05).load_calibration().max_false_hit_rate == 0.01


def test_toml_table_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text('[models]\nlm = "x"\n[cache.semantic]\nenabled = true\nendpoints = ["chat", "classify"]\n'
                    "shadow_share = 0.5\n")
    config = load_serve_config(path)
    assert config.cache.semantic == SemanticConfig(enabled=True, endpoints=("chat", "classify"), shadow_share=0.5)
    path.write_text('[models]\nlm = "x"\n[cache.semantic]\nenable = true\n')
    with pytest.raises(UserError, match=re.escape("unknown key 'enable' in [cache.semantic]")):
        load_serve_config(path)
    assert serve_config(["lm=x"], semantic_cache=True).cache.semantic.enabled
    assert not serve_config(["lm=x"], no_cache=True).cache.enabled
    with pytest.raises(UserError, match="contradict"):
        serve_config(["lm=x"], no_cache=True, semantic_cache=True)
    assert ServeCacheConfig(exact=False, prompt=False, semantic=SemanticConfig(enabled=True)).enabled


def test_build_from_config_uses_the_calibration() -> None:
    t = build_semantic_tier(SemanticConfig(enabled=True, shadow_share=1.0), MemoryBackend(), encoder=BagEncoder())
    bundled = Calibration.load(bundled_calibration()).threshold
    assert t.shadow is not None and t.shadow.share == 1.0 and t.stats()["threshold"] == bundled


class _Recorder:
    def __init__(self) -> None:
        self.outcomes: list[bool] = []

    def record(self, agree: bool) -> None:
        self.outcomes.append(agree)


def test_shadow_runs_are_bounded_and_compare_answers() -> None:
    async def main() -> tuple[_Recorder, ShadowRuns]:
        semantic, runs = _Recorder(), ShadowRuns(max_in_flight=1)
        gate = asyncio.Event()
        hit = CacheHit(answer("cached"), "semantic", "k", 0.0, 0.0, 0.0, False)

        async def fresh() -> dict[str, Any]:
            await gate.wait()
            return answer("different")

        async def same() -> dict[str, Any]:
            return answer(" cached ")

        async def broken() -> dict[str, Any]:
            raise RuntimeError("queue full")

        key = chat("q")
        assert runs.schedule(semantic, key, hit, fresh)
        assert not runs.schedule(semantic, key, hit, same)  # one in flight already: dropped
        gate.set()
        while runs.in_flight:
            await asyncio.sleep(0.01)
        for rerun in (same, broken):
            assert runs.schedule(semantic, key, hit, rerun)
            while runs.in_flight:
                await asyncio.sleep(0.01)
        assert not runs.schedule(semantic, key, hit, None)
        await runs.close()
        return semantic, runs

    semantic, runs = asyncio.run(main())
    assert semantic.outcomes == [False, True]
    assert runs.counts == {"started": 3, "dropped": 2, "failed": 1, "agreed": 1, "disagreed": 1}


def test_cli_flag_help_banner_and_early_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               tiny_llama: Any) -> None:
    from infopt.cli import main
    from infopt.serve._launch import banner

    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--semantic-cache" in out and "[cache.semantic]" in out and 'shadow_action = "tighten"' in out
    text = "\n".join(banner(serve_config(["lm=x"], semantic_cache=True), [tiny_llama]))
    assert "cache: exact + prompt + semantic on" in text
    assert "semantic cache: completions, chat (minilm-l3:onnx-int8" in text
    path = tmp_path / "serve.toml"
    path.write_text(f'port = 0\n[models]\nlm = "{tmp_path / "missing"}"\n[cache.semantic]\nmax_false_hit_rate = '
                    "0.001\n")
    assert main(["serve", "--config", str(path), "--semantic-cache"]) == 2  # before any model loads
    err = capsys.readouterr().err
    assert "max_false_hit_rate is 0.001" in err and "missing" not in err
