"""The response caches in front of every model: tenant scoping, look-up before the queue, store after a complete
200, the hit's body and header, and the cache's metrics. Lookup order: exact, prompt, then the optional
`semantic` tier (any object with `SemanticTier`'s get / put; built from `config.semantic` when it is enabled and
none is given), then the model. A semantic hit marked `verify` is also run on the model in the background
(`ShadowRuns`) and the tier told whether the answers agree.

A cache failure never fails a request: every call into a tier is guarded, and any exception is a miss (counted
in `errors`). Backends block (SQLite, Redis), so every call runs in a worker thread.

    cache = ResponseCache(config.cache, admin=True)
    await cache.open()
    return await cache.answer(request, "/v1/classify", body, served, compute)   # compute: async () -> dict
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel

from infopt.models import fingerprint_model
from infopt.serve._config import ServeCacheConfig
from infopt.serve._served import ServedModel
from infopt.serve._shadow_run import Rerun, ShadowRuns, generation_rerun
from infopt.serve.cache import GENERATIVE, CacheHit, CacheRequest, CacheStack

__all__ = ["CACHE_HEADER", "TAGS_HEADER", "TENANT_HEADER", "CacheCollector", "ResponseCache", "SemanticTier",
           "tenant_of"]

log = logging.getLogger(__name__)

CACHE_HEADER = "X-Infopt-Cache"
"""Response header of a cached answer: the tier that answered (`exact`, `prompt`, `semantic`)."""
TENANT_HEADER = "X-Tenant"
"""Request header naming the tenant (else the bearer API key, hashed; else the body's `user`; else none)."""
TAGS_HEADER = "X-Infopt-Cache-Tags"
"""Request header: comma-separated tags the stored answer gets (for POST /v1/cache/invalidate {"tag": ...})."""


class SemanticTier(Protocol):
    """The hook of a semantic tier, asked after exact and prompt missed: the same get / put as `CacheStack`.
    Optional extras used when present: `purge() -> int`, `invalidate_model(fp) -> int`, `invalidate_tag(tag) ->
    int`, `stats() -> dict` (admin endpoints, metrics), `record(agree: bool)` (shadow checks of hits whose `verify`
    is true), `close()`."""

    def get(self, request: CacheRequest) -> CacheHit | None: ...

    def put(self, request: CacheRequest, response: Any, *, model_s: float = 0.0, tags: Iterable[str] = (),
            shared: bool | None = None) -> bool: ...


@dataclass(frozen=True)
class ServedRequest(CacheRequest):
    """A `CacheRequest` that also carries the served model and the parsed body (for shadow runs)."""

    served: ServedModel | None = _field(default=None, compare=False, repr=False)
    parsed: BaseModel | None = _field(default=None, compare=False, repr=False)


def tenant_of(request: Request, user: str | None = None) -> str | None:
    """The tenant of a request. With [auth] on: its API key's tenant, and nothing the client sends (X-Tenant and
    `user` are ignored, so no key reads another tenant's entries). Without: `X-Tenant`, else the bearer API key
    (sha256, never stored as is), else the OpenAI `user` field, else None (the anonymous tenant). Each kind has its
    own prefix, so they never collide."""
    info = request.scope.get("infopt")
    tenant = getattr(info, "tenant", None)
    if tenant is not None:
        return f"auth:{tenant}"
    header = request.headers.get(TENANT_HEADER, "").strip()
    if header:
        return f"tenant:{header}"
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    return f"user:{user}" if user else None


def _tags(request: Request) -> tuple[str, ...]:
    return tuple(t.strip() for t in request.headers.get(TAGS_HEADER, "").split(",") if t.strip())


def hit_body(hit: CacheHit) -> dict[str, Any]:
    """The stored response with a fresh `id` and `created` (when it has them) and `infopt.cache` / `age_s`."""
    body = dict(hit.response)
    if isinstance(body.get("id"), str):
        body["id"] = body["id"].split("-")[0] + "-" + uuid.uuid4().hex[:24]
    if "created" in body:
        body["created"] = int(time.time())
    body["infopt"] = {"cache": hit.tier, "age_s": round(hit.age_s, 3)}
    return body


class ResponseCache:
    """The caches of one server: the `CacheStack` of `config` (opened by `open`) and the `semantic` hook."""

    def __init__(self, config: ServeCacheConfig, semantic: SemanticTier | None = None, *, admin: bool = False) -> None:
        self.config, self.semantic, self.admin = config, semantic, admin
        self.stack: CacheStack | None = None
        self.shadow = ShadowRuns(config.semantic.max_shadow_runs)
        self._own_semantic = False
        self.errors = 0
        self.semantic_counts = {"lookups": 0, "hits": 0, "saved_s": 0.0}
        self._fingerprints: dict[int, str] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.stack is not None or self.semantic is not None

    async def open(self) -> None:
        """Open the backend and tiers (a backend that cannot open: the server runs without them)."""
        if self.config.enabled:
            try:
                self.stack = await asyncio.to_thread(CacheStack.open, self.config)
            except Exception:
                log.exception("the response cache could not open; serving without it")
                self._error()
        if self.semantic is None and self.config.semantic.enabled and self.stack is not None:
            await self._open_semantic(self.stack)

    async def _open_semantic(self, stack: CacheStack) -> None:
        """Build the semantic tier of `config.semantic` over the stack's backend, off the event loop (the encoder
        loads in seconds); on failure, serve without it."""
        from infopt.serve.cache._semantic_tier import build_semantic_tier

        try:
            self.semantic = await asyncio.to_thread(build_semantic_tier, self.config.semantic, stack.backend,
                                                    cache_nondeterministic=self.config.cache_nondeterministic,
                                                    shared_by_default=self.config.shared_by_default)
            self._own_semantic = True
        except Exception:
            log.exception("the semantic cache tier could not open; serving without it")
            self._error()

    async def close(self) -> None:
        await self.shadow.close()
        semantic, own = self.semantic, self._own_semantic
        if own and semantic is not None:
            self.semantic, self._own_semantic = None, False
            closer = getattr(semantic, "close", None)
            if callable(closer):
                await asyncio.to_thread(closer)
        stack, self.stack = self.stack, None
        if stack is not None:
            await asyncio.to_thread(stack.close)

    def _error(self) -> None:
        with self._lock:
            self.errors += 1

    def _known_fingerprint(self, served: ServedModel) -> str | None:
        return served.loaded.manifest.fingerprint or self._fingerprints.get(id(served))

    def fingerprint(self, served: ServedModel) -> str:
        """The model's identity in every key: its manifest fingerprint, else the hash of its weights."""
        fp = self._known_fingerprint(served)
        if not fp:
            fp = self._fingerprints[id(served)] = "weights:" + fingerprint_model(served.loaded)
        return fp

    async def request(self, request: Request, endpoint: str, body: BaseModel, served: ServedModel,
                      ) -> CacheRequest | None:
        """What the caches are asked about (None: caching is off)."""
        if not self.enabled:
            return None
        try:  # known after the first request: no thread hop on the hot path
            known = self._known_fingerprint(served)
            fp = known if known else await asyncio.to_thread(self.fingerprint, served)
        except Exception:
            log.exception("cannot fingerprint model %r; not caching it", served.name)
            self._error()
            return None
        return ServedRequest(endpoint, body.model_dump(), fp, tenant_of(request, getattr(body, "user", None)),
                             served, body)

    def _get(self, key: CacheRequest) -> CacheHit | None:
        hit = self.stack.get(key) if self.stack is not None else None
        if hit is None and self.semantic is not None:
            hit = self.semantic.get(key)
            with self._lock:
                self.semantic_counts["lookups"] += 1
                if hit is not None:
                    self.semantic_counts["hits"] += 1
                    self.semantic_counts["saved_s"] += hit.model_s
        return hit

    async def lookup(self, key: CacheRequest | None, rerun: Rerun | None = None) -> CacheHit | None:
        """The cached answer, or None (a miss, or any failure of the caches). A semantic hit to verify starts a
        shadow run: `rerun` (the model's answer), or for completions / chat a generation of the same request."""
        if key is None:
            return None
        try:
            hit = await asyncio.to_thread(self._get, key)
        except Exception:
            log.exception("cache lookup failed; answering from the model")
            self._error()
            return None
        if hit is not None and getattr(hit, "verify", False):
            try:
                if rerun is None and key.endpoint in GENERATIVE and isinstance(key, ServedRequest) \
                        and key.served is not None and key.parsed is not None:
                    rerun = generation_rerun(key.served, key.parsed)
                self.shadow.schedule(self.semantic, key, hit, rerun)
            except Exception:
                log.exception("cannot start a shadow check of a semantic hit")
                self._error()
        return hit

    def _put(self, key: CacheRequest, response: Any, model_s: float, tags: tuple[str, ...]) -> None:
        if self.stack is not None:
            self.stack.put(key, response, model_s=model_s, tags=tags)
        if self.semantic is not None:
            self.semantic.put(key, response, model_s=model_s, tags=tags)

    async def store(self, key: CacheRequest | None, response: Any, model_s: float, request: Request) -> None:
        """Store a complete answer (failures are logged and counted, never raised)."""
        if key is None:
            return
        try:
            await asyncio.to_thread(self._put, key, response, model_s, _tags(request))
        except Exception:
            log.exception("cache store failed")
            self._error()

    async def answer(self, request: Request, endpoint: str, body: BaseModel, served: ServedModel,
                     compute: Callable[[], Awaitable[dict[str, Any]]]) -> Response:
        """The cached answer (with its header), or `compute()`'s, stored."""
        key = await self.request(request, endpoint, body, served)
        hit = await self.lookup(key, rerun=compute)
        if hit is not None:
            return JSONResponse(hit_body(hit), headers={CACHE_HEADER: hit.tier})
        start = time.perf_counter()
        out = await compute()
        await self.store(key, out, time.perf_counter() - start, request)
        return JSONResponse(out)

    def stats(self) -> dict[str, Any]:
        """What /v1/stats and /v1/cache/stats show (blocks: call it in a thread)."""
        out: dict[str, Any] = {"enabled": self.enabled, "errors": self.errors}
        if self.stack is not None:
            out.update(self.stack.stats())
        if self.semantic is not None:
            extra = getattr(self.semantic, "stats", None)
            out["semantic"] = {**dict(self.semantic_counts), **(extra() if callable(extra) else {}),
                               "shadow_runs": {**self.shadow.counts, "in_flight": self.shadow.in_flight}}
        return out

    def run_admin(self, op: str, *args: str) -> int:
        """`purge`, `invalidate_model` or `invalidate_tag` over every tier; the entries dropped (blocks)."""
        n = 0
        for target in (self.stack, self.semantic):
            fn = getattr(target, op, None)
            if callable(fn):
                n += int(fn(*args))
        return n


def _semantic_metrics(sem: dict[str, Any]) -> Iterator[Metric]:
    """The semantic tier's shadow checks, measured false-hit rate (and its upper bound), and threshold."""
    shadow: dict[str, Any] = sem["shadow"] if isinstance(sem.get("shadow"), dict) else {}
    checks = CounterMetricFamily("infopt_cache_semantic_shadow_checks",
                                 "Semantic hits checked against the model in the background, by result.",
                                 labels=["result"])
    total, wrong = float(shadow.get("total_verified", 0)), float(shadow.get("total_disagreements", 0))
    checks.add_metric(["agree"], total - wrong)
    checks.add_metric(["disagree"], wrong)
    yield checks
    runs = sem.get("shadow_runs", {})
    yield CounterMetricFamily("infopt_cache_semantic_shadow_dropped", "Shadow checks not run (too many in flight).",
                              value=float(runs.get("dropped", 0)))
    gauges = [("false_hit_rate", "Measured false-hit rate of semantic hits (since the threshold last changed).",
               shadow.get("false_hit_rate", 0.0)),
              ("false_hit_rate_ucb", "Upper confidence bound of the measured false-hit rate.",
               shadow.get("false_hit_rate_ucb", 1.0)),
              ("threshold", "Guard-score threshold of semantic hits in force (+Inf: hits off).", sem.get("threshold")),
              ("disabled", "1 when semantic hits are off (shadow checks disabled them, or no threshold).",
               0.0 if sem.get("serving", True) else 1.0)]
    for name, doc, value in gauges:
        yield GaugeMetricFamily(f"infopt_cache_semantic_{name}", doc,
                                value=float("inf") if value is None else float(value))


class CacheCollector:
    """Prometheus collector of the cache (read at scrape time from `ResponseCache.stats`)."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self.cache.stats()
        except Exception:
            log.exception("cache stats failed")
            stats = {"errors": self.cache.errors}
        tiers: dict[str, dict[str, Any]] = dict(stats.get("tiers", {}))
        if "semantic" in stats:
            tiers["semantic"] = stats["semantic"]
        series = [("lookups", "Cache lookups by tier.", "lookups"), ("hits", "Cache hits by tier.", "hits"),
                  ("corrupt_entries", "Stored entries found corrupt or foreign (a miss).", "corrupt"),
                  ("saved_seconds", "Model time the cache hits saved.", "saved_s")]
        for name, doc, field in series:
            counter = CounterMetricFamily(f"infopt_cache_{name}", doc, labels=["tier"])
            for tier, s in tiers.items():
                counter.add_metric([tier], float(s.get(field, 0)))
            yield counter
        for name, doc in (("entries", "Entries stored by tier."), ("bytes", "Bytes stored by tier.")):
            gauge = GaugeMetricFamily(f"infopt_cache_{name}", doc, labels=["tier"])
            for tier, s in tiers.items():
                gauge.add_metric([tier], float(s.get(name) or 0))
            yield gauge
        if isinstance(stats.get("semantic"), dict):
            yield from _semantic_metrics(stats["semantic"])
        up = GaugeMetricFamily("infopt_cache_backend_up", "1 while the cache backend answers, else 0.",
                               labels=["backend"])
        if "backend" in stats:
            up.add_metric([str(stats["backend"].get("backend", "?"))], 1.0 if stats["backend"].get("up") else 0.0)
        yield up
        yield CounterMetricFamily("infopt_cache_errors", "Cache calls that failed (answered as misses).",
                                  value=float(stats.get("errors", 0)))
