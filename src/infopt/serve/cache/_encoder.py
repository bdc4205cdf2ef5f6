"""Prompt encoder of the semantic cache: a bundled sentence embedder, fp32 or infopt's own onnx-int8 build of it.

An encoder is named `MODEL:VARIANT`: MODEL is `minilm-l3` (paraphrase-MiniLM-L3-v2, the default: half the layers,
so about half the time per prompt) or `minilm-l6` (all-MiniLM-L6-v2); VARIANT is `onnx-int8` or `fp32`.
`PromptEncoder.load("minilm-l3:onnx-int8")` builds the quantized variant once (seconds) and saves it under
`infopt.models.cache_dir() / "serve-cache"`; later loads read the saved folder. `check_agreement` measures
the cosine between the variant's embeddings and fp32's, which must stay above 0.98 for a calibration
(fitted on one variant) to carry over.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the names above import without torch (configs and the CLI read them)
    from infopt.models import LoadedModel

__all__ = ["DEFAULT_ENCODER", "ENCODERS", "PromptEncoder", "check_agreement", "encoder_name", "variant_folder"]

ENCODER_MODELS = ("minilm-l3", "minilm-l6")
VARIANTS = ("onnx-int8", "fp32")
ENCODERS = tuple(f"{m}:{v}" for m in ENCODER_MODELS for v in VARIANTS)
"""Every encoder name `MODEL:VARIANT`."""
DEFAULT_ENCODER = "minilm-l3:onnx-int8"


def encoder_name(name: str) -> str:
    """`name` as `MODEL:VARIANT`: a bare variant (`onnx-int8`, `fp32`) means the default model's."""
    return f"{DEFAULT_ENCODER.split(':')[0]}:{name}" if name in VARIANTS else name


def variant_folder(name: str) -> Path:
    """Where the built encoder `name` is saved (built once, reused by every process)."""
    from infopt.models import cache_dir

    return cache_dir() / "serve-cache" / encoder_name(name).replace(":", "-")


def _load_variant(name: str) -> LoadedModel:
    model, _, variant = encoder_name(name).partition(":")
    if model not in ENCODER_MODELS or variant not in VARIANTS:
        raise ValueError(f"unknown encoder {name!r}: use one of {', '.join(ENCODERS)}")
    from infopt.models import MANIFEST_FILE, build_once, load_model, save_model

    fp32 = load_model(model)
    if variant == "fp32":
        return fp32
    folder = variant_folder(name)
    try:
        return load_model(folder)
    except Exception:  # not built yet, or a stale or partial build: (re)build it
        pass

    def build(tmp: Path) -> None:
        from infopt.compress.quantize import quantize

        save_model(quantize(fp32, variant), tmp, overwrite=True)

    if (folder / MANIFEST_FILE).exists():  # stale: build_once builds only where no manifest is
        (folder / MANIFEST_FILE).unlink()
    return load_model(build_once(folder, build, ready=MANIFEST_FILE))


class PromptEncoder:
    """Embeds prompts as unit vectors (float32, [B, dim]); `name` and `dim` identify the embedding space."""

    def __init__(self, model: LoadedModel, name: str, max_length: int = 128) -> None:
        if model.task != "embedding":
            raise ValueError(f"the encoder must be an embedding model, not {model.task}")
        self.model = model
        self.name = name
        """Embedding space id (`MODEL:VARIANT`): indexes and calibrations made with another must not be mixed."""
        self.max_length = max_length
        from infopt.models import OnnxModel

        self._onnx = model.model if isinstance(model.model, OnnxModel) else None
        self.dim = int(self.encode(["x"]).shape[1])

    @classmethod
    def load(cls, name: str = DEFAULT_ENCODER) -> PromptEncoder:
        """A bundled encoder by name (see the module doc); an onnx-int8 variant is built and cached on first use."""
        return cls(_load_variant(name), encoder_name(name))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[B, dim] float32 unit vectors (re-normalised, so quantization error cannot change the norm)."""
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        if self._onnx is not None:  # numpy end to end: about 0.2 ms less per prompt than through torch
            batch = self.model.encode(list(texts), self.max_length)
            hidden = self._onnx.run(**{k: v.numpy() for k, v in batch.items()})  # [B, T, D]
            mask = batch["attention_mask"].numpy()[..., None].astype(np.float32)  # [B, T, 1]
            vecs = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        else:
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
