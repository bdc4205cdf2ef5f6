"""Tiers over real backends: tenant scopes, shared entries, model fingerprints, TTL, tags, purge, stats."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infopt.serve.cache import Backend, CacheRequest, ExactCache, MemoryBackend, PromptCache, SQLiteBackend


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b: Backend = MemoryBackend(1 << 20) if request.param == "memory" else SQLiteBackend(tmp_path / "c.sqlite")
    yield b
    b.close()


def _req(text: str = "hi", tenant: str | None = "t1", fp: str = "fp-1") -> CacheRequest:
    return CacheRequest("/v1/classify", {"model": "clf", "input": [text], "truncate": False}, fp, tenant)


def test_tenants_are_isolated(backend: Backend) -> None:
    cache = ExactCache(backend)
    assert cache.put(_req(tenant="t1"), {"label": "t1's"})
    assert cache.get(_req(tenant="t2")) is None and cache.get(_req(tenant=None)) is None
    hit = cache.get(_req(tenant="t1"))
    assert hit is not None and hit.response == {"label": "t1's"} and not hit.shared
    assert cache.invalidate_tenant("t1") == 1 and cache.get(_req(tenant="t1")) is None


def test_shared_entries_are_seen_by_every_tenant_but_own_ones_win(backend: Backend) -> None:
    cache = ExactCache(backend)
    assert cache.put(_req(tenant="t1"), {"label": "shared"}, shared=True)
    for tenant in ("t1", "t2", None):
        hit = cache.get(_req(tenant=tenant))
        assert hit is not None and hit.shared and hit.response == {"label": "shared"}
    cache.put(_req(tenant="t2"), {"label": "own"})
    hit = cache.get(_req(tenant="t2"))
    assert hit is not None and hit.response == {"label": "own"} and not hit.shared
    shared = ExactCache(backend, shared_by_default=True)
    shared.put(_req("other", tenant="t3"), {"label": "x"})
    assert shared.get(_req("other", tenant="t4")) is not None


def test_a_changed_model_never_gets_an_old_answer(backend: Backend) -> None:
    cache = ExactCache(backend)
    cache.put(_req(fp="fp-1"), {"label": "old"})
    cache.put(_req("b", fp="fp-1"), {"label": "old"})
    cache.put(_req(fp="fp-2"), {"label": "new"})
    hit = cache.get(_req(fp="fp-2"))
    assert hit is not None and hit.response == {"label": "new"}
    assert cache.invalidate_model("fp-1") == 2
    assert cache.get(_req(fp="fp-1")) is None and cache.get(_req(fp="fp-2")) is not None


def test_ttl_expiry(backend: Backend) -> None:
    cache = ExactCache(backend, ttl_s=0.2)
    forever = ExactCache(backend, ttl_s=None)
    cache.put(_req(), {"label": "x"})
    forever.put(_req("kept"), {"label": "y"})
    assert cache.get(_req()) is not None
    time.sleep(0.3)
    assert cache.get(_req()) is None and forever.get(_req("kept")) is not None
    assert cache.counts.corrupt == 0


def test_tag_invalidation_and_purge(backend: Backend) -> None:
    exact, prompt = ExactCache(backend), PromptCache(backend)
    exact.put(_req("a"), {"label": "a"}, tags=("faq", "v1"))
    exact.put(_req("b"), {"label": "b"}, tags=("v1",))
    exact.put(_req("c"), {"label": "c"})
    chat = CacheRequest("/v1/chat/completions", {"model": "lm", "messages": [{"role": "user", "content": "hi"}],
                                                  "temperature": 0}, "fp-1", "t1")
    assert prompt.put(chat, {"choices": []}, tags=("faq",))
    assert exact.invalidate_tag("faq") == 1
    assert exact.get(_req("a")) is None and exact.get(_req("b")) is not None
    assert prompt.get(chat) is not None  # another tier's entries stay
    assert exact.invalidate_tag("v1") == 1 and exact.invalidate_tag("nothing") == 0
    assert exact.purge() == 1 and exact.get(_req("c")) is None
    assert prompt.get(chat) is not None and prompt.purge() == 1


def test_stats(backend: Backend) -> None:
    cache = ExactCache(backend)
    assert cache.get(_req()) is None
    cache.put(_req(), {"label": "x"}, model_s=0.5)
    cache.get(_req())
    cache.get(_req())
    cache.get(CacheRequest("/v1/models", {}, "fp-1"))
    stats = cache.stats()
    assert (stats["lookups"], stats["hits"], stats["misses"], stats["skipped"], stats["puts"]) == (3, 2, 1, 1, 1)
    assert stats["saved_s"] == 1.0 and stats["hit_rate"] == pytest.approx(2 / 3)
    assert stats["entries"] == 1 and stats["bytes"] > 0 and stats["backend"]["up"]


def test_a_response_that_is_not_json_is_not_stored(backend: Backend) -> None:
    cache = ExactCache(backend)
    assert not cache.put(_req(), {"x": object()})
    assert not cache.put(_req(), {"x": float("nan")})
    assert cache.counts.dropped == 2 and cache.get(_req()) is None


class _CountingKeys(ExactCache):
    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.computed: list[str] = []

    def key(self, request: CacheRequest, scope: str) -> str | None:
        self.computed.append(scope)
        return super().key(request, scope)


def test_a_lookup_and_the_put_after_it_compute_each_key_once(backend: Backend) -> None:
    tier = _CountingKeys(backend)
    req = _req()
    assert tier.get(req) is None and tier.put(req, {"label": "pos"})
    hit = tier.get(req)
    assert hit is not None and hit.response == {"label": "pos"}
    assert sorted(tier.computed) == ["*shared*", "t:t1"]  # one per scope, for the two lookups and the put
    other = dataclasses.replace(req, fingerprint="fp-2")  # a changed model: its own keys, never the old answer
    assert other.keys == {} and tier.get(other) is None and len(tier.computed) == 4


def test_two_tiers_of_one_kind_keep_their_own_keys(backend: Backend) -> None:
    """The memo is per tier object: another tier named alike (e.g. a semantic tier for other endpoints) asks anew."""
    first, second, req = _CountingKeys(backend), _CountingKeys(backend), _req()
    assert first.get(req) is None and second.get(req) is None
    assert sorted(first.computed) == sorted(second.computed) == ["*shared*", "t:t1"]
