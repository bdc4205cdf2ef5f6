"""The variants an optimisation run builds and measures next to the baseline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from infopt.errors import InfoptError
from infopt.models import LoadedModel

__all__ = ["DEFAULT_SCHEMES", "Candidate", "candidates"]

DEFAULT_SCHEMES: dict[str, tuple[str, ...]] = {
    "classification": ("dynamic-int8", "dynamic-int8-emb", "onnx-fp32", "onnx-int8", "onnx-static-int8"),
    "embedding": ("dynamic-int8", "dynamic-int8-emb", "onnx-fp32", "onnx-int8", "onnx-static-int8"),
    "causal-lm": ("dynamic-int8", "weight-int8", "weight-int4"),
}


@dataclass(frozen=True)
class Candidate:
    """A named way to make a variant from the baseline (and calibration texts)."""

    name: str
    about: str
    build: Callable[[LoadedModel, list[str]], LoadedModel]


def _quantization(scheme: str) -> Candidate:
    from infopt.compress.quantize import config_from_name, quantize

    config = config_from_name(scheme)
    return Candidate(scheme, f"quantize: {scheme}", lambda m, calib: quantize(m, config, calibration=calib))


def candidates(task: str, schemes: tuple[str, ...] | None = None) -> list[Candidate]:
    """Every variant that applies to `task`, or the named schemes (validated up front)."""
    names = schemes if schemes is not None else DEFAULT_SCHEMES[task]
    if task == "causal-lm" and any(n.startswith("onnx") for n in names):
        raise InfoptError("The ONNX schemes apply to classifiers and embedders only.", "drop onnx-* for a causal LM.")
    return [_quantization(n) for n in names]
