"""Prompt encoder of the semantic cache: all-MiniLM-L6-v2, fp32 or infopt's own onnx-int8 build of it.

`PromptEncoder.load("onnx-int8")` builds the quantized variant once (about 30 s) and saves it under
`infopt.models.cache_dir() / "serve-cache"`; later loads read the saved folder. `check_agreement` measures
the cosine between the variant's embeddings and fp32's, which must stay above 0.98 for the calibration
(fitted on one variant) to carry over.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from infopt.models import LoadedModel, cache_dir, load_model, save_model

__all__ = ["ENCODER_MODEL", "PromptEncoder", "check_agreement", "variant_folder"]

ENCODER_MODEL = "minilm-l6"
Variant = Literal["fp32", "onnx-int8"]


def variant_folder(variant: str) -> Path:
    """Where the built `variant` of the encoder is saved (built once, reused by every process)."""
    return cache_dir() / "serve-cache" / f"{ENCODER_MODEL}-{variant}"


def _load_variant(variant: Variant) -> LoadedModel:
    fp32 = load_model(ENCODER_MODEL)
    if variant == "fp32":
        return fp32
    folder = variant_folder(variant)
    if (folder / "config.json").exists() or any(folder.glob("*.onnx")):
        try:
            return load_model(folder)
        except Exception:  # a stale or partial build: rebuild it below
            pass
    from infopt.compress.quantize import quantize

    built = quantize(fp32, variant)
    folder.parent.mkdir(parents=True, exist_ok=True)
    save_model(built, folder, overwrite=True)
    return load_model(folder)


class PromptEncoder:
    """Embeds prompts as unit vectors (float32, [B, dim]); `name` and `dim` identify the embedding space."""

    def __init__(self, model: LoadedModel, variant: str = "fp32", max_length: int = 128) -> None:
        if model.task != "embedding":
            raise ValueError(f"the encoder must be an embedding model, not {model.task}")
        self.model = model
        self.variant = variant
        self.max_length = max_length
        self.dim = int(self.encode(["x"]).shape[1])

    @classmethod
    def load(cls, variant: Variant = "onnx-int8") -> PromptEncoder:
        """The bundled MiniLM-L6 encoder; `onnx-int8` is built and cached on first use."""
        return cls(_load_variant(variant), variant)

    @property
    def name(self) -> str:
        """Embedding space id: indexes and calibrations made with another encoder must not be mixed."""
        return f"{ENCODER_MODEL}:{self.variant}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[B, dim] float32 unit vectors (re-normalised, so quantization error cannot change the norm)."""
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        out = self.model.predict(list(texts), self.max_length)
        vecs = np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out, dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return np.ascontiguousarray(vecs / np.maximum(norms, 1e-12))

    def encode_one(self, text: str) -> np.ndarray:
        """[dim] unit vector of one prompt."""
        return self.encode([text])[0]


def check_agreement(a: PromptEncoder, b: PromptEncoder, texts: Sequence[str], batch: int = 64) -> dict[str, float]:
    """Cosine between the two encoders' embeddings of the same texts: min, mean and 1st percentile."""
    cos: list[np.ndarray] = []
    for i in range(0, len(texts), batch):
        chunk = list(texts[i : i + batch])
        cos.append(np.sum(a.encode(chunk) * b.encode(chunk), axis=1))
    allc = np.concatenate(cos) if cos else np.ones(1, dtype=np.float32)
    return {"min": float(allc.min()), "mean": float(allc.mean()), "p01": float(np.percentile(allc, 1))}
