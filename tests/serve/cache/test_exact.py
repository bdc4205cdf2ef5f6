"""The exact and prompt tiers on completions and chat, `CacheStack` and `CacheConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infopt.errors import UserError
from infopt.serve.cache import (
    CacheConfig,
    CacheRequest,
    CacheStack,
    ExactCache,
    Layered,
    MemoryBackend,
    PromptCache,
    SQLiteBackend,
)


def _chat(content: Any = "hi", **body: Any) -> CacheRequest:
    return CacheRequest("/v1/chat/completions", {"model": "lm", "messages": [{"role": "user", "content": content}],
                                                 **body}, "fp", "t1")


def test_only_deterministic_generations_are_cached() -> None:
    backend = MemoryBackend()
    for cache in (ExactCache(backend), PromptCache(backend)):
        assert not cache.put(_chat(temperature=0.8), {"a": 1}) and cache.get(_chat(temperature=0.8)) is None
        assert not cache.put(_chat(), {"a": 1})  # default temperature 1
        assert cache.put(_chat(temperature=0), {"a": 1}) and cache.get(_chat(temperature=0)) is not None
        assert cache.put(_chat(temperature=0.8, seed=7), {"a": 2})
        hit = cache.get(_chat(temperature=0.8, seed=7))
        assert hit is not None and hit.response == {"a": 2}
        assert cache.counts.skipped == 1  # lookups skipped (puts are not counted there)
    loose = ExactCache(MemoryBackend(), cache_nondeterministic=True)
    assert loose.put(_chat(temperature=0.8), {"a": 1}) and loose.get(_chat(temperature=0.8)) is not None


def test_prompt_tier_matches_what_exact_does_not() -> None:
    backend = MemoryBackend()
    exact, prompt = ExactCache(backend), PromptCache(backend)
    first = _chat("hi there", temperature=0, max_completion_tokens=5, stream=True)
    same = _chat([{"type": "text", "text": "hi  "}, {"type": "text", "text": "there"}], temperature=0.0,
                 max_tokens=5)
    for tier in (exact, prompt):
        tier.put(first, {"text": "hello"})
    assert exact.get(same) is None
    hit = prompt.get(same)
    assert hit is not None and hit.tier == "prompt" and hit.response == {"text": "hello"}
    assert exact.get(_chat("hi there", temperature=0, max_completion_tokens=5)) is not None  # stream ignored
    assert PromptCache(backend).get(CacheRequest("/v1/classify", {"model": "c", "input": "x"}, "fp")) is None


def test_stack_looks_up_exact_then_prompt(tmp_path: Path) -> None:
    stack = CacheStack.open(CacheConfig(path=str(tmp_path / "c.sqlite")))
    assert isinstance(stack.backend, SQLiteBackend)
    request = _chat("hi", temperature=0)
    assert stack.get(request) is None
    assert stack.put(request, {"text": "x"}, model_s=1.5)
    hit = stack.get(request)
    assert hit is not None and hit.tier == "exact"
    hit = stack.get(_chat(" hi ", temperature=0, n=1))
    assert hit is not None and hit.tier in ("exact", "prompt")
    stats = stack.stats()
    assert stats["hits"] == 2 and stats["saved_s"] == 3.0 and set(stats["tiers"]) == {"exact", "prompt"}
    assert stats["tiers"]["exact"]["entries"] == 1 and stats["tiers"]["prompt"]["entries"] == 1
    assert stack.invalidate_model("fp") == 2 and stack.get(request) is None
    stack.put(request, {"text": "x"}, tags=("t",))
    assert stack.invalidate_tag("t") == 2
    stack.put(request, {"text": "x"})
    assert stack.purge() == 2
    stack.close()


def test_stack_without_tiers_and_memory_backend() -> None:
    stack = CacheStack.open(CacheConfig(backend="memory", exact=False, prompt=False, max_bytes=1000))
    assert isinstance(stack.backend, MemoryBackend) and stack.backend.max_bytes == 1000
    assert stack.tiers == [] and not stack.put(_chat(temperature=0), {}) and stack.get(_chat(temperature=0)) is None


def test_redis_config_builds_a_layered_backend() -> None:
    stack = CacheStack.open(CacheConfig(backend="redis", redis_url="redis://127.0.0.1:1/0", namespace="x"))
    try:
        assert isinstance(stack.backend, Layered) and stack.backend.name == "memory+redis"
        request = _chat(temperature=0)
        assert stack.put(request, {"a": 1}) and stack.get(request) is not None  # nothing listens on port 1
        assert not stack.backend.up
    finally:
        stack.close()


@pytest.mark.parametrize("field, value", [("backend", "disk"), ("exact", 1), ("max_bytes", 0), ("exact_ttl_s", 0),
                                          ("namespace", "a:b"), ("redis_url", "http://x"), ("backoff_s", -1),
                                          ("path", 3)])
def test_config_is_validated(field: str, value: Any) -> None:
    with pytest.raises(UserError, match=f"CacheConfig.{field}"):
        CacheConfig(**{field: value})


def test_config_defaults() -> None:
    config = CacheConfig(path=Path("/tmp/x.sqlite"), prompt_ttl_s=None)
    assert config.path == "/tmp/x.sqlite" and config.sqlite_path == Path("/tmp/x.sqlite")
    assert CacheConfig().backend == "sqlite" and CacheConfig().sqlite_path.name == "responses.sqlite"
