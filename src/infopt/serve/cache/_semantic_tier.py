"""The semantic tier as a server cache tier: `SemanticCache` over the backend of the exact and prompt tiers.

What is embedded (`query_of`): for chat, the last message, which must be the user's; every other message (system
prompt, earlier turns) and the sampling parameters must match exactly (normalised, as the prompt tier compares
them): they are hashed into the entry's namespace with the model fingerprint. For completions, the prompt (one
string); for classify (only when listed in `endpoints`), the input (one text). Entries are stored under
`semantic:<sha256>` as the usual `Entry` envelope (so a corrupt or foreign entry is a miss) whose payload is
`{"prompt", "ns", "response", "enc", "vec"}` (`vec`: the prompt's embedding by encoder `enc`, float16, base64);
namespaces are per tenant scope (own, then shared, as the exact tier) and model.

Sync: the tier follows its backend's events. Another process's `put` of a `semantic:` key (Redis pub/sub, also
through a local front) is read back and indexed here (in one indexing thread), from its stored vector when it was
made by the same encoder, else embedded again; deletes, invalidations (by model, tag, tenant, the whole tier) and
clears drop index entries, whichever process made them. At start, and when the listener reconnects, the tier
indexes the live semantic entries the backend holds that it has not indexed (a restarted server on its SQLite
file, a new server on a shared Redis, entries added while Redis was unreachable). Entries that expire
or are evicted leave the index when a lookup finds their payload gone, or at the next sweep; past `max_indexed`
the oldest leave the index (their entry stays for the exact and prompt tiers).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from infopt.serve.cache._backends import Backend, CacheEvent
from infopt.serve.cache._index import pack_vector, unpack_vector
from infopt.serve.cache._keys import SHARED_SCOPE, scope_of
from infopt.serve.cache._semantic import NewEntry, SemanticCache
from infopt.serve.cache._semantic_config import SemanticConfig
from infopt.serve.cache._semantic_keys import answers_agree, digest, query_of
from infopt.serve.cache._shadow import ShadowVerifier
from infopt.serve.cache._store import CorruptEntry, Entry
from infopt.serve.cache._tiers import CacheHit, CacheRequest, CacheTier

__all__ = ["KEY_PREFIX", "SemanticCacheHit", "SemanticResponseTier", "answers_agree", "build_semantic_tier",
           "load_encoder", "query_of"]

log = logging.getLogger(__name__)

KEY_PREFIX = "semantic:"
"""Prefix of every semantic entry's backend key (how a process tells them from other tiers' in events)."""
_DEFAULT_PATHS = ("/v1/completions", "/v1/chat/completions")
_encoders: dict[str, Any] = {}
_encoder_lock = threading.Lock()


def load_encoder(name: str) -> Any:
    """The bundled `PromptEncoder` `name`, loaded once per process (seconds; the first build longer)."""
    from infopt.serve.cache._encoder import encoder_name

    name = encoder_name(name)  # a bare variant and its full name are one encoder
    with _encoder_lock:
        if name not in _encoders:
            from infopt.serve.cache._encoder import PromptEncoder

            _encoders[name] = PromptEncoder.load(name)
        return _encoders[name]


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


@dataclass(frozen=True)
class SemanticCacheHit(CacheHit):
    """A semantic hit: `verify` asks the caller to shadow-run the request; the prompt it was cached for; score."""

    verify: bool = False
    cached_prompt: str = ""
    score: float = 0.0


@dataclass(frozen=True)
class _Meta:
    scope: str
    ns: str
    tags: tuple[str, ...]
    expires: float | None


_SWEEP_EVERY = 256
"""Index puts between sweeps that drop the index entries whose backend entry has expired."""


_REMOTE_BATCH = 64
"""Entries from other processes embedded in one encoder call."""
_BACKFILL = "\0backfill"
"""Indexer-queue marker: list the backend's semantic keys and index those not indexed here yet."""


class _EntryStore:
    """`SemanticCache`'s payload store: the backend's bytes of a valid, live semantic entry, else None."""

    def __init__(self, tier: SemanticResponseTier) -> None:
        self.tier = tier

    def get(self, key: str) -> bytes | None:
        backend = self.tier.backend
        data = backend.get(key)
        if data is None:  # expired or evicted: the caller forgets it
            self.tier._drop_key(key)
            return None
        try:
            entry = Entry.decode(data, key)
        except CorruptEntry:
            self.tier.counts.add(corrupt=1)
            backend.delete(key)
            return None
        if entry.tier != self.tier.tier:
            self.tier.counts.add(corrupt=1)
            return None
        if entry.expired():
            backend.delete(key)
            return None
        return data

    def put(self, key: str, value: bytes, ttl: float | None) -> bool:
        entry = Entry.decode(value, key)
        return self.tier.backend.put(key, value, entry.expires, entry.index_tags)


class SemanticResponseTier(CacheTier):
    """The `SemanticTier` of `ResponseCache` (get / put / invalidation / stats) over `cache` and `backend`."""

    tier = "semantic"

    def __init__(self, backend: Backend, cache: SemanticCache, *, endpoints: Iterable[str] = _DEFAULT_PATHS,
                 ttl_s: float | None = 3600.0, cache_nondeterministic: bool = False,
                 shared_by_default: bool = False, sync: bool = True, max_indexed: int = 200_000) -> None:
        super().__init__(backend, ttl_s=ttl_s, cache_nondeterministic=cache_nondeterministic,
                         shared_by_default=shared_by_default)
        self.cache, self.endpoints, self.max_indexed = cache, frozenset(endpoints), max_indexed
        cache.store = _EntryStore(self)
        self._meta: dict[str, _Meta] = {}  # insertion order: the oldest leave first past max_indexed
        self._lock = threading.Lock()
        self._remote: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._indexer: threading.Thread | None = None
        self.synced = self._indexed_since_sweep = self.reembedded = self.evicted = 0
        self._unsubscribe = backend.subscribe(self._on_event) if sync else None
        if sync:  # what the backend holds at start (a restart, a new peer): listed now, read and indexed in the thread
            for key in backend.keys(f"tier:{self.tier}"):
                self._queue_remote(key)

    @property
    def _encoder_name(self) -> str:
        return str(getattr(self.cache.encoder, "name", ""))

    # ------------------------------------------------------------ keys

    def _query(self, request: CacheRequest) -> tuple[str, str] | None:
        """(text, namespace) of a request this tier answers, else None."""
        if request.endpoint not in self.endpoints:
            return None
        query = query_of(request.endpoint, request.body)
        if query is None:
            return None
        context = digest({"endpoint": request.endpoint, "context": query[1]})[:32]
        return query[0], f"{request.fingerprint}#{context}"

    def key(self, request: CacheRequest, scope: str) -> str | None:
        query = self._query(request)
        return None if query is None else KEY_PREFIX + digest({"v": 1, "ns": query[1], "scope": scope,
                                                                "text": query[0]})

    # ------------------------------------------------------------ get / put

    def get(self, request: CacheRequest) -> CacheHit | None:
        """The cached answer of a prompt that means the same (own scope, then shared), or None; never raises for
        what the backend holds."""
        query = self._query(request) if self.cacheable(request) else None
        if query is None:
            self.counts.add(skipped=1)
            return None
        start = time.perf_counter()
        try:
            for scope in (scope_of(request.tenant, False), SHARED_SCOPE):
                hit = self.cache.get(query[0], scope, query[1])
                if hit is None:
                    continue
                try:
                    entry = Entry.decode(hit.response, hit.key)
                    payload = entry.response()
                    ok = (entry.fingerprint == request.fingerprint and entry.scope == scope
                          and payload["ns"] == query[1] and isinstance(payload["response"], dict))
                except (CorruptEntry, ValueError, KeyError, TypeError):
                    ok = False
                if not ok:  # not through keys alone: a tampered or foreign entry is a miss
                    self.counts.add(corrupt=1)
                    continue
                self.counts.add(lookups=1, hits=1, saved_s=entry.model_s)
                return SemanticCacheHit(payload["response"], self.tier, entry.key, entry.created,
                                        max(0.0, time.time() - entry.created), entry.model_s, scope == SHARED_SCOPE,
                                        hit.verify, hit.cached_prompt, float(hit.decision.score))
            self.counts.add(lookups=1, misses=1)
            return None
        finally:
            self.counts.add(lookup_s=time.perf_counter() - start)

    def put(self, request: CacheRequest, response: Any, *, model_s: float = 0.0, tags: Iterable[str] = (),
            shared: bool | None = None) -> bool:
        """Store `response` and index its prompt (then other processes index it from the backend's event)."""
        query = self._query(request) if self.cacheable(request) else None
        if query is None:
            return False
        scope = scope_of(request.tenant, self.shared_by_default if shared is None else shared)
        key = self.key_of(request, scope)
        assert key is not None
        vec = self.cache.embed(query[0]).astype(np.float16)  # what every process indexes
        try:
            entry = Entry.make(key, self.tier, request.fingerprint, scope, tuple(tags), self.ttl_s, model_s,
                               {"prompt": query[0], "ns": query[1], "response": response,
                                "enc": self._encoder_name, "vec": pack_vector(vec)})
        except (TypeError, ValueError):
            self.counts.add(dropped=1)
            return False
        ok = self.backend.put(key, entry.encode(), entry.expires, entry.index_tags)
        self.counts.add(**{"puts" if ok else "dropped": 1})
        if ok:
            self._index(key, scope, query[1], query[0], entry.tags, entry.expires, vec.astype(np.float32))
        return ok

    def _index(self, key: str, scope: str, ns: str, prompt: str, tags: tuple[str, ...],
               expires: float | None, embedding: np.ndarray) -> None:
        with self._lock:
            self._meta.pop(key, None)
            self._meta[key] = _Meta(scope, ns, tags, expires)
            self._indexed_since_sweep += 1
            sweep = self._indexed_since_sweep >= _SWEEP_EVERY
            if sweep:
                self._indexed_since_sweep = 0
            oldest = next(iter(self._meta)) if len(self._meta) > self.max_indexed else None
        self.cache.on_new_entry(NewEntry(key, scope, ns, prompt, self._encoder_name), embedding)
        if oldest is not None:
            self.evicted += 1
            self._drop_key(oldest)
        if sweep:
            now = time.time()
            self._drop(lambda k, m: m.expires is not None and m.expires <= now)

    # ------------------------------------------------------------ sync and invalidation

    def _on_event(self, event: CacheEvent) -> None:
        if event.op == "put":
            if not event.local and event.key is not None and event.key.startswith(KEY_PREFIX):
                self._queue_remote(event.key)
        elif event.op == "delete" and event.key is not None:
            self._drop_key(event.key)
        elif event.op == "invalidate" and event.tag is not None:
            self._drop_tag(event.tag)
        elif event.op == "clear":
            self._drop(lambda k, m: True)
        elif event.op == "resync":  # the listener reconnected: the indexer thread lists what it missed
            self._queue_remote(_BACKFILL)

    def _queue_remote(self, key: str) -> None:
        if self._indexer is None:
            self._indexer = threading.Thread(target=self._index_remote, name="semantic-index", daemon=True)
            self._indexer.start()
        self._remote.put(key)

    def _index_remote(self) -> None:
        """The indexer thread: entries other processes added (or the backend held at start), read back and indexed
        in batches of up to `_REMOTE_BATCH`, from their stored vectors or embedded again in one encoder call."""
        while True:
            keys = [self._remote.get()]
            while len(keys) < _REMOTE_BATCH and not self._remote.empty():
                keys.append(self._remote.get())
            if None in keys:
                return
            try:
                if _BACKFILL in keys:
                    with self._lock:
                        known = set(self._meta)
                    for key in self.backend.keys(f"tier:{self.tier}"):
                        if key not in known:
                            self._remote.put(key)
                self._index_many([k for k in keys if k is not None and k != _BACKFILL])
            except Exception:
                log.exception("semantic cache: cannot index %d entries added by another process", len(keys))

    def _index_many(self, keys: list[str]) -> None:
        found = []
        for key in keys:
            data = self.cache.store.get(key)
            if data is None:
                continue
            try:
                entry = Entry.decode(data, key)
                payload = json.loads(entry.payload)
                same = payload.get("enc") == self._encoder_name
                vec = unpack_vector(payload.get("vec"), int(self.cache.encoder.dim)) if same else None
                found.append((key, entry, str(payload["ns"]), str(payload["prompt"]), vec))
            except Exception:
                log.exception("semantic cache: cannot index entry %s added by another process", key)
        again = [prompt for *_, prompt, vec in found if vec is None]  # no usable stored vector: embed these
        self.reembedded += len(again)
        fresh = iter(self.cache.encoder.encode(again).astype(np.float16).astype(np.float32) if again else ())
        for key, entry, ns, prompt, vec in found:
            self._index(key, entry.scope, ns, prompt, entry.tags, entry.expires, next(fresh) if vec is None else vec)
            self.synced += 1

    def _drop_key(self, key: str) -> None:
        with self._lock:
            meta = self._meta.pop(key, None)
        if meta is not None:
            self.cache.forget(key, meta.scope, meta.ns)

    def _drop(self, which: Callable[[str, _Meta], bool]) -> int:
        with self._lock:
            gone = [(k, m) for k, m in self._meta.items() if which(k, m)]
            for k, _ in gone:
                del self._meta[k]
        for k, m in gone:
            self.cache.forget(k, m.scope, m.ns)
        return len(gone)

    def _drop_tag(self, tag: str) -> int:
        kind, _, value = tag.partition(":")
        if tag == f"tier:{self.tier}":
            return self._drop(lambda k, m: True)
        if kind != self.tier:
            return 0
        what, _, value = value.partition(":")
        if what == "model":
            return self._drop(lambda k, m: m.ns.rsplit("#", 1)[0] == value)
        if what == "scope":
            return self._drop(lambda k, m: m.scope == value)
        if what == "tag":
            return self._drop(lambda k, m: value in m.tags)
        return 0

    def invalidate_model(self, fingerprint: str) -> int:
        n = super().invalidate_model(fingerprint)
        self._drop_tag(f"{self.tier}:model:{fingerprint}")
        return n

    def invalidate_tag(self, tag: str) -> int:
        n = super().invalidate_tag(tag)
        self._drop_tag(f"{self.tier}:tag:{tag}")
        return n

    def invalidate_tenant(self, tenant: str | None) -> int:
        n = super().invalidate_tenant(tenant)
        self._drop_tag(f"{self.tier}:scope:{scope_of(tenant, False)}")
        return n

    def purge(self) -> int:
        n = super().purge()
        self._drop(lambda k, m: True)
        return n

    # ------------------------------------------------------------ shadow verification, stats, close

    @property
    def shadow(self) -> ShadowVerifier | None:
        return self.cache.shadow

    def record(self, agree: bool) -> None:
        """One shadow check's outcome (the verifier may tighten the threshold or disable hits)."""
        if self.cache.shadow is not None:
            self.cache.shadow.record(agree)

    def stats(self) -> dict[str, Any]:
        """The tier's counters and stored entries, the index, the guard's counts, the threshold, shadow metrics."""
        out = super().stats()
        sem = self.cache.stats
        out.update({"vetoed": sem["vetoed"], "below_threshold": sem["below_threshold"], "expired": sem["expired"],
                    "indexed": len(self.cache), "synced": self.synced, "reembedded": self.reembedded,
                    "evicted_from_index": self.evicted, "threshold": _finite(self.cache.threshold),
                    "calibrated_threshold": _finite(self.cache.calibration.threshold),
                    "serving": self.cache.enabled, "encoder": self._encoder_name})
        if self.cache.shadow is not None:
            out["shadow"] = {k: _finite(v) for k, v in self.cache.shadow.metrics().items()}
        return out

    def close(self) -> None:
        """Stop following the backend (the backend itself is its owner's to close)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._indexer is not None:
            self._remote.put(None)


def build_semantic_tier(config: SemanticConfig, backend: Backend, *, cache_nondeterministic: bool = False,
                        shared_by_default: bool = False, encoder: Any = None) -> SemanticResponseTier:
    """The tier `config` describes over `backend` (blocks: loads the calibration and, unless given, the encoder)."""
    calibration = config.load_calibration()
    encoder = encoder if encoder is not None else load_encoder(config.encoder)
    shadow = ShadowVerifier(calibration.threshold, budget=config.max_false_hit_rate,
                            confidence=calibration.confidence, share=config.shadow_share,
                            action="disable" if config.shadow_action == "disable" else "tighten")
    cache = SemanticCache(encoder, None, calibration, _NoStore(), shadow=shadow, candidates=config.candidates)
    return SemanticResponseTier(backend, cache, endpoints=config.paths, ttl_s=config.ttl_s,
                                cache_nondeterministic=cache_nondeterministic, shared_by_default=shared_by_default,
                                max_indexed=config.max_indexed)


class _NoStore:
    """Placeholder store until the tier installs its own."""

    def get(self, key: str) -> bytes | None:
        return None

    def put(self, key: str, value: bytes, ttl: float | None) -> None:
        return None
