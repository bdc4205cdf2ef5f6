"""Shared test doubles of the cache tests."""

from __future__ import annotations

import hashlib

import numpy as np


class BagEncoder:
    """Hashed bag of words: deterministic, no model (stands in for the prompt encoder in logic tests)."""

    dim, name = 64, "bag"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().strip("?!.").split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]
