"""The semantic tier: answer a prompt from the cached answer of a prompt that means the same.

`get` embeds the prompt, searches the (tenant, model fingerprint) namespace's index (never another one),
runs the guard on the nearest candidates and returns the first that the calibration accepts and whose payload
the store still holds. `put` stores the payload, indexes the prompt and publishes a `NewEntry` message so other
processes can embed and index it (`on_new_entry`). The payload store is injected: any object with
`get(key) -> bytes | None` and `put(key, bytes, ttl)`.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from infopt.serve.cache._calibrate import Calibration
from infopt.serve.cache._guard import Facts, GuardDecision, extract, guard
from infopt.serve.cache._index import VectorIndex
from infopt.serve.cache._shadow import ShadowVerifier

__all__ = ["NewEntry", "PayloadStore", "SemanticCache", "SemanticHit"]

RECENT = 32
"""Prompt embeddings a `SemanticCache` remembers (see `embed`)."""


class PayloadStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes, ttl: float | None) -> Any: ...


@dataclass(frozen=True)
class NewEntry:
    """Message about an entry one process added, so others index it: enough to embed and scope it."""

    key: str
    tenant: str
    fingerprint: str
    prompt: str
    encoder: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> NewEntry:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class SemanticHit:
    """A cached answer, the prompt it was cached for, and why it was accepted; `verify`: shadow-run it."""

    key: str
    response: bytes
    cached_prompt: str
    decision: GuardDecision
    verify: bool = False


class SemanticCache:
    """Semantic tier over an encoder, an index factory, a calibration and a payload store."""

    def __init__(self, encoder: Any, index: Callable[[int], VectorIndex] | None, calibration: Calibration,
                 store: PayloadStore, *, shadow: ShadowVerifier | None = None, candidates: int = 4,
                 publish: Callable[[NewEntry], None] | None = None, ttl: float | None = None) -> None:
        self.encoder, self.calibration, self.store, self.shadow = encoder, calibration, store, shadow
        self._new_index = index or (lambda dim: VectorIndex(dim))
        self.candidates, self.publish, self.ttl = candidates, publish, ttl
        self._indexes: dict[tuple[str, str], VectorIndex] = {}
        self._entries: dict[tuple[str, str], dict[str, tuple[str, Facts]]] = {}
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self.stats = {"lookups": 0, "hits": 0, "vetoed": 0, "below_threshold": 0, "expired": 0}

    def embed(self, prompt: str) -> np.ndarray:
        """The prompt's unit vector. The last `RECENT` are remembered, so a lookup in two scopes, and the put
        that follows a miss, run the encoder once."""
        with self._lock:
            vec = self._recent.get(prompt)
        if vec is None:
            vec = self.encoder.encode_one(prompt)
            with self._lock:
                self._recent[prompt] = vec
                if len(self._recent) > RECENT:
                    self._recent.popitem(last=False)
        return vec

    @property
    def threshold(self) -> float:
        """The threshold in force: the shadow verifier's (it may have tightened it), else the calibration's."""
        return self.shadow.threshold if self.shadow is not None else self.calibration.threshold

    @property
    def enabled(self) -> bool:
        return self.calibration.enabled and not (self.shadow is not None and self.shadow.disabled)

    def _namespace(self, tenant: str, fingerprint: str) -> tuple[VectorIndex, dict[str, tuple[str, Facts]]]:
        ns = (tenant, fingerprint)
        with self._lock:
            if ns not in self._indexes:
                self._indexes[ns] = self._new_index(int(self.encoder.dim))
                self._entries[ns] = {}
            return self._indexes[ns], self._entries[ns]

    def get(self, prompt: str, tenant: str, fingerprint: str) -> SemanticHit | None:
        """The best accepted hit in this tenant's and model's namespace, or None."""
        self.stats["lookups"] += 1
        ns = (tenant, fingerprint)
        if not self.enabled or ns not in self._indexes or not len(self._indexes[ns]):
            return None
        index, entries = self._indexes[ns], self._entries[ns]
        query_facts = extract(prompt)
        for key, cosine in index.search(self.embed(prompt), self.candidates):
            entry = entries.get(key)
            if entry is None:
                continue
            decision = guard(prompt, entry[0], cosine, (query_facts, entry[1]))
            if decision.vetoed or decision.score < self.threshold:
                self.stats["vetoed" if decision.vetoed else "below_threshold"] += 1
                continue
            payload = self.store.get(key)
            if payload is None:  # expired or evicted in the store: forget it here too
                self.stats["expired"] += 1
                self.forget(key, tenant, fingerprint)
                continue
            self.stats["hits"] += 1
            verify = self.shadow.should_verify() if self.shadow is not None else False
            return SemanticHit(key, payload, entry[0], decision, verify)
        return None

    def put(self, prompt: str, response: bytes, tenant: str, fingerprint: str, key: str,
            ttl: float | None = None) -> NewEntry:
        """Store the payload under `key`, index the prompt, publish the entry; returns the message."""
        self.store.put(key, response, ttl if ttl is not None else self.ttl)
        message = NewEntry(key, tenant, fingerprint, prompt, str(getattr(self.encoder, "name", "")))
        self.on_new_entry(message)
        if self.publish is not None:
            self.publish(message)
        return message

    def on_new_entry(self, message: NewEntry, embedding: np.ndarray | None = None) -> None:
        """Index an entry (ours, or one another process added); the payload stays in the shared store."""
        enc_name = str(getattr(self.encoder, "name", ""))
        if message.encoder and enc_name and message.encoder != enc_name and embedding is not None:
            embedding = None  # another embedding space: embed it again here
        vec = self.embed(message.prompt) if embedding is None else embedding
        index, entries = self._namespace(message.tenant, message.fingerprint)
        with self._lock:
            entries[message.key] = (message.prompt, extract(message.prompt))
        index.add(message.key, vec)

    def forget(self, key: str, tenant: str, fingerprint: str) -> bool:
        """Drop an entry from the index (its payload is the store's business)."""
        ns = (tenant, fingerprint)
        if ns not in self._indexes:
            return False
        with self._lock:
            self._entries[ns].pop(key, None)
        return self._indexes[ns].remove(key)

    def __len__(self) -> int:
        return sum(len(i) for i in self._indexes.values())
