"""Nearest-neighbour index of the semantic cache: FAISS HNSW on unit vectors (inner product == cosine).

Entries are keyed by the cache's entry key (a string). FAISS' HNSW cannot delete, so `remove` leaves a
tombstone that searches skip (they over-fetch); once tombstones pass `compact_at` of the graph, it is rebuilt
from the kept vectors. Vectors live in a float32 array that doubles when full (capacity growth); the graph
grows with it. Thread-safe (one lock).
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import faiss
import numpy as np

__all__ = ["VectorIndex", "pack_vector", "unpack_vector"]


class VectorIndex:
    """add / search / remove by key over unit vectors of dimension `dim`."""

    def __init__(self, dim: int, capacity: int = 1024, m: int = 16, ef_construction: int = 64,
                 ef_search: int = 48, compact_at: float = 0.25) -> None:
        self.dim, self.m, self.ef_construction, self.ef_search = dim, m, ef_construction, ef_search
        self.compact_at = compact_at
        self._lock = threading.Lock()
        self._vecs = np.zeros((max(capacity, 1), dim), dtype=np.float32)
        self._reset_graph()

    def _reset_graph(self) -> None:
        self._graph = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        self._graph.hnsw.efConstruction = self.ef_construction
        self._graph.hnsw.efSearch = self.ef_search
        self._keys: list[str | None] = []  # graph id -> key (None: removed)
        self._ids: dict[str, int] = {}
        self._dead = 0

    @property
    def capacity(self) -> int:
        """Rows allocated for vectors (doubles when full)."""
        return int(self._vecs.shape[0])

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def _prep(self, vecs: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(np.asarray(vecs, dtype=np.float32).reshape(-1, self.dim))
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def add(self, key: str, vec: np.ndarray) -> None:
        """Insert or replace the vector of `key`."""
        self.add_many([key], vec)

    def add_many(self, keys: list[str], vecs: np.ndarray) -> None:
        """Insert many (faster than one by one); a key given twice keeps its last vector."""
        v = self._prep(vecs)
        if len(keys) != len(v):
            raise ValueError(f"{len(keys)} keys for {len(v)} vectors")
        with self._lock:
            for key in keys:
                self._remove_locked(key)
            start = len(self._keys)
            while start + len(v) > self.capacity:
                grown = np.zeros((self.capacity * 2, self.dim), dtype=np.float32)
                grown[:start] = self._vecs[:start]
                self._vecs = grown
            self._vecs[start : start + len(v)] = v
            self._graph.add(v)
            for i, key in enumerate(keys):
                if key in self._ids:  # repeated inside this batch
                    self._keys[self._ids[key]] = None
                    self._dead += 1
                self._keys.append(key)
                self._ids[key] = start + i

    def _remove_locked(self, key: str) -> bool:
        gid = self._ids.pop(key, None)
        if gid is None:
            return False
        self._keys[gid] = None
        self._dead += 1
        return True

    def remove(self, key: str) -> bool:
        """Drop `key`; False if it was not there. Compacts when tombstones pass `compact_at`."""
        with self._lock:
            removed = self._remove_locked(key)
            if removed and self._dead > 64 and self._dead > self.compact_at * len(self._keys):
                self._compact_locked()
            return removed

    def _compact_locked(self) -> None:
        kept = [(k, gid) for gid, k in enumerate(self._keys) if k is not None]
        vecs = self._vecs[[gid for _, gid in kept]] if kept else np.zeros((0, self.dim), np.float32)
        self._reset_graph()
        self._vecs = np.zeros((max(self.capacity, 1), self.dim), dtype=np.float32)
        if kept:
            self._vecs[: len(kept)] = vecs
            self._graph.add(vecs)
            self._keys = [k for k, _ in kept]
            self._ids = {k: i for i, k in enumerate(self._keys) if k is not None}

    def vector(self, key: str) -> np.ndarray | None:
        """The stored (normalised) vector of `key`."""
        gid = self._ids.get(key)
        return None if gid is None else self._vecs[gid].copy()

    def search(self, vec: np.ndarray, k: int = 1) -> list[tuple[str, float]]:
        """Up to `k` (key, cosine) pairs, best first."""
        q = self._prep(vec)
        with self._lock:
            live = len(self._ids)
            if live == 0:
                return []
            fetch = min(len(self._keys), k + min(self._dead, 16))
            while True:
                scores, ids = self._graph.search(q, fetch)
                found = [(self._keys[i], float(s)) for s, i in zip(scores[0], ids[0], strict=True)
                         if i >= 0 and self._keys[i] is not None]
                if len(found) >= min(k, live) or fetch >= len(self._keys):
                    return [(str(key), s) for key, s in found[:k]]
                fetch = min(len(self._keys), fetch * 4)


def pack_vector(vec: np.ndarray) -> str:
    """A vector as base64 of little-endian float16 (how a semantic entry carries its prompt's embedding)."""
    return base64.b64encode(np.asarray(vec, dtype="<f2").tobytes()).decode()


def unpack_vector(text: Any, dim: int) -> np.ndarray | None:
    """The stored vector, or None when it is missing or not `dim` float16 values."""
    try:
        vec = np.frombuffer(base64.b64decode(text, validate=True), dtype="<f2")
    except (TypeError, ValueError):
        return None
    return vec.astype(np.float32) if vec.shape == (dim,) and np.isfinite(vec).all() else None
