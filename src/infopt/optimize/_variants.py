"""The variants an optimisation run builds and measures next to the baseline."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infopt.data import TextDataset
from infopt.errors import NotApplicable, UserError
from infopt.models import LoadedModel

__all__ = ["DEFAULT_SCHEMES", "DISTILL_VARIANTS", "PRUNE_VARIANTS", "Candidate", "candidates"]

DEFAULT_SCHEMES: dict[str, tuple[str, ...]] = {
    # Left out of the classifier list, and run only when named, to keep the default job under 5 minutes on 2 cores:
    # dynamic-int8 and dynamic-int8-emb (torch int8: half the speed of onnx-int8 here, and less accurate), onnx-fp32
    # (the int8 schemes are faster and 4x smaller), onnx-static-int8 (slower, larger and less accurate than
    # onnx-smooth-int8 here), distill-l3 (trains ~7 min), onnx-block-int8 (slower than onnx-fp32 here).
    "classification": ("onnx-int8", "onnx-smooth-int8", "prune-structured", "prune-structured+onnx-int8"),
    "embedding": ("dynamic-int8", "dynamic-int8-emb", "onnx-fp32", "onnx-int8", "onnx-smooth-int8", "onnx-static-int8"),
    "causal-lm": ("dynamic-int8", "weight-int8", "weight-int4", "prune-wanda-50", "prune-2:4"),
}

PRUNE_VARIANTS: dict[str, str] = {
    "prune-structured": "structured: a third of the heads (LMs: of the KV groups) and half the FFN neurons, Taylor",
    "prune-structured-l1": "prune-structured, and the least influential layer removed too",
    "prune-unstructured-50": "magnitude, 50% of each matrix",
    "prune-unstructured-90": "magnitude, 90% of each matrix (classifiers: in 3 gradual steps)",
    "prune-wanda-50": "Wanda (|w| x activation norm), 50% of each row",
    "prune-magnitude-2:4": "magnitude, 2:4 semi-structured",
    "prune-2:4": "Wanda, 2:4 semi-structured",
}
"""Pruning variants by name; classifiers are recovered by 1/3 epoch of distillation on the train split.
Any of them followed by `+SCHEME` (e.g. `prune-structured+dynamic-int8-emb`) is then quantized."""


@dataclass(frozen=True)
class Candidate:
    """A named way to make a variant from the baseline (and calibration texts)."""

    name: str
    about: str
    build: Callable[..., LoadedModel]
    """`build(base, calibration_texts)`, plus `train=` (the train split or None) when `train` is set."""
    train: bool = False
    """The variant fine-tunes, so `build` also takes the training split."""


def _quantization(scheme: str) -> Candidate:
    from infopt.compress.quantize import config_from_name, quantize

    config = config_from_name(scheme)
    return Candidate(scheme, f"quantize: {scheme}", lambda m, calib: quantize(m, config, calibration=calib))


def _prune_config(name: str, task: str) -> Any:
    from infopt.compress.prune import MagnitudeConfig, RecoveryConfig, StructuredConfig, WandaConfig

    if name not in PRUNE_VARIANTS:
        raise UserError(f"Unknown pruning variant {name!r}.", f"use one of: {', '.join(PRUNE_VARIANTS)}.")
    recovery = RecoveryConfig() if task == "classification" else None
    if name == "prune-structured":
        return StructuredConfig(heads=1 / 3, ffn=0.5, importance="taylor", calibration_size=512, recovery=recovery)
    if name == "prune-structured-l1":
        return StructuredConfig(heads=1 / 3, ffn=0.5, layers=1, importance="taylor", calibration_size=512,
                                recovery=recovery)
    if name == "prune-unstructured-90":
        return MagnitudeConfig(sparsity=0.9, steps=3 if recovery else 1, recovery=recovery)
    if name == "prune-magnitude-2:4":
        return MagnitudeConfig(pattern="2:4", recovery=recovery)
    if name == "prune-2:4":
        return WandaConfig(pattern="2:4", recovery=recovery)
    if name == "prune-wanda-50":
        return WandaConfig(sparsity=0.5, recovery=recovery)
    return MagnitudeConfig(sparsity=0.5, recovery=recovery)


def _pruning(name: str, task: str, built: dict[str, tuple[LoadedModel, LoadedModel]]) -> Candidate:
    """A pruning variant, or `PRUNE+SCHEME`: pruned (and recovered) once per run, then quantized."""
    from infopt.compress.prune import prune
    from infopt.compress.quantize import config_from_name, quantize

    pruned_name, _, scheme = name.partition("+")
    config = _prune_config(pruned_name, task)
    quant = config_from_name(scheme) if scheme else None

    def build(base: LoadedModel, calibration: list[str], train: TextDataset | None = None) -> LoadedModel:
        cached = built.get(pruned_name)
        if cached is None or cached[0] is not base:
            cached = built[pruned_name] = (base, prune(base, config, calibration=calibration, train=train))
        model = cached[1]
        if quant is not None:
            model = quantize(model, quant, calibration=calibration)
        return dataclasses.replace(model, manifest=dataclasses.replace(model.manifest, name=name))

    about = PRUNE_VARIANTS[pruned_name] + (f", then quantize: {scheme}" if scheme else "")
    return Candidate(name, f"prune: {about}", build, train=config.recovery is not None or task == "classification")


DISTILL_VARIANTS: dict[str, str] = {
    "distill-l3": "3-layer student (every other teacher layer), response KD T=4 alpha=0.5, 1 epoch on the train split",
    "distill-l15": "15-layer student of a causal LM (every other layer), token-level KD, 150 steps of 4 x 128 tokens",
}
"""Distilled students by name (`distill-lN`: N layers cut from the teacher, evenly spaced, then distilled)."""


def _distillation(name: str, task: str) -> Candidate:
    from infopt.compress.distill import DistillConfig, StudentConfig, distill

    layers = name.removeprefix("distill-l")
    if not layers.isdigit() or int(layers) < 1:
        raise UserError(f"Unknown distillation variant {name!r}.", f"use one of: {', '.join(DISTILL_VARIANTS)}.")
    if task not in ("classification", "causal-lm"):
        raise UserError(f"{name}: distilled students are built for classifiers and causal LMs.", f"drop {name}.")
    student = StudentConfig(num_layers=int(layers), name=name)

    def build(base: LoadedModel, calibration: list[str], train: TextDataset | None = None) -> LoadedModel:
        if task == "causal-lm":
            from infopt.train import FinetuneConfig

            lm = FinetuneConfig(epochs=1.0, batch_size=4, lr=1e-4, max_length=128, seed=0)
            return distill(base, student, calibration, DistillConfig(train=lm, max_steps=150))
        if train is None:
            raise UserError(f"{name} needs the labelled train split.", "run it from infopt optimize with labels.")
        return distill(base, student, train, DistillConfig())

    about = DISTILL_VARIANTS.get(name, f"{layers}-layer student, distilled")
    return Candidate(name, f"distill: {about}", build, train=task == "classification")


def candidates(task: str, schemes: tuple[str, ...] | None = None) -> list[Candidate]:
    """Every variant that applies to `task`, or the named schemes (validated up front)."""
    names = schemes if schemes is not None else DEFAULT_SCHEMES[task]
    if task == "causal-lm" and any(n.startswith("onnx") for n in names):
        raise NotApplicable("The ONNX schemes apply to classifiers and embedders only.", "drop onnx-* for a causal LM.")
    built: dict[str, tuple[LoadedModel, LoadedModel]] = {}
    return [
        _pruning(n, task, built) if n.startswith("prune-")
        else _distillation(n, task) if n.startswith("distill-")
        else _quantization(n)
        for n in names
    ]
