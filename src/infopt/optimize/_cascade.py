"""Cascades and early exit as candidates of the search: build one from two built variants, measure it.

`build_cascade(small, large, validation, max_drop, delta)` chooses the threshold on the validation split by risk
control (`infopt.compress.cascade.calibrate`) and returns the cascade; `measure_cascade` gives its accuracy, its
escalation rate and its batch-1 latency (mean / p50 / p95, tokenization included) on the test split, timed
text by text in turn with the models it is compared with. `calibrate_early_exit` sets an early-exit model's
threshold by the same rule.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infopt.compress.cascade import (
    THRESHOLD_GRID,
    CascadeModel,
    ThresholdChoice,
    batched_logits,
    calibrate,
    clopper_pearson_upper,
    fixed_sequence,
    make_cascade,
)
from infopt.compress.distill import DistillConfig, EarlyExitConfig
from infopt.compress.distill._early_exit import (
    NEVER,
    EarlyExitClassifier,
    exit_logits_on,
    self_distill,
    simulate_exits,
)
from infopt.data import DataConfig, TextDataset, load_dataset, split_dataset
from infopt.errors import UserError
from infopt.evaluate import VariantResult
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize._plan import default_data

__all__ = [
    "CascadeMeasurement",
    "build_cascade",
    "calibrate_early_exit",
    "cascade_variant",
    "early_exit_variant",
    "interleaved_latencies",
    "measure_cascade",
    "validation_split",
]


def validation_split(model: LoadedModel, data: DataConfig | None = None, seed: int = 0) -> TextDataset:
    """The validation split of the data `plan_evaluation` splits (same seed: disjoint from its test split)."""
    splits = split_dataset(load_dataset(data or default_data(model)), seed=seed)
    return splits.validation.aligned_to(model.manifest.labels) if model.manifest.labels else splits.validation


def build_cascade(small: LoadedModel, large: LoadedModel, validation: TextDataset, max_drop: float,
                  delta: float = 0.1, name: str | None = None) -> LoadedModel:
    """A cascade of two built variants whose threshold keeps the accuracy loss vs `large` under `max_drop` points
    (a one-sided bound at level `delta` on `validation`); UserError if no threshold does, naming the bound."""
    choice = calibrate(small, large, validation, max_drop, delta)
    if not choice.passed:
        raise UserError(
            f"No cascade threshold keeps the bound of the loss vs {large.manifest.name} under {max_drop} points on "
            f"{choice.n} validation rows (escalating everything already bounds it at {choice.drop_bound:.2f}).",
            "allow a larger --max-accuracy-drop, a larger delta, or give more validation data.")
    return make_cascade(small, large, choice.threshold, choice,
                        name=name or f"cascade({small.manifest.name}>{large.manifest.name})")


def cascade_variant(folder: Path, small: VariantResult, large: VariantResult, validation: TextDataset,
                    max_drop: float, measure: Callable[[Path], VariantResult]) -> VariantResult:
    """The search's cascade of two variants saved under `folder` (their `path`s): calibrated on `validation`,
    saved to `folder/variants/cascade-...` and measured with `measure` (a fresh process, like every variant)."""
    cascade = build_cascade(load_model(folder / small.path), load_model(folder / large.path), validation, max_drop)
    stem = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"cascade-{small.recipe}-then-{large.recipe or 'baseline'}")
    target = folder / "variants" / stem
    save_model(cascade, target)
    result = measure(target)
    result.path = str(target.relative_to(folder))
    m = cascade.manifest.metrics
    result.notes.append(f"threshold chosen on {m['n']} validation rows: {large.name} answers "
                        f"{100 * m['escalation_rate']:.1f}% of them (their latency is both models'); loss vs "
                        f"{large.name} bounded by {m['drop_bound']:.2f} points")
    return result


def interleaved_latencies(models: dict[str, LoadedModel], texts: list[str], warmup: int = 5) -> dict[str, list[float]]:
    """Batch-1 latencies (ms, tokenization included) of every model on every text, the models taking turns on each
    text (the order rotating), so that background load and the text mix hit all of them alike."""
    names = list(models)
    for name in names:
        for text in texts[:warmup]:
            models[name].predict([text])
    out: dict[str, list[float]] = {name: [] for name in names}
    for i, text in enumerate(texts):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            models[name].predict([text])
            out[name].append(1000 * (time.perf_counter() - t0))
    return out


@dataclass(frozen=True)
class CascadeMeasurement:
    """One model's numbers on the test split."""

    name: str
    """The model's name."""
    n: int
    """Test rows its accuracy is measured on."""
    accuracy: float
    """Test accuracy, percent."""
    latency_n: int
    """Texts timed at batch 1."""
    mean_ms: float
    """Mean batch-1 latency."""
    p50_ms: float
    """Median batch-1 latency."""
    p95_ms: float
    """95th percentile batch-1 latency."""
    escalation_rate: float | None = None
    """Cascades: share of test rows the large model answered (None for other models)."""
    latency_escalation_rate: float | None = None
    """Cascades: share of the timed texts the large model answered."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cascade_of(model: LoadedModel) -> CascadeModel | None:
    return model.model if isinstance(model.model, CascadeModel) else None


def measure_cascade(cascade: LoadedModel, test: TextDataset, others: dict[str, LoadedModel] | None = None,
                    latency_texts: int = 300) -> dict[str, CascadeMeasurement]:
    """Accuracy on all of `test`, escalation rate, and batch-1 latency on its first `latency_texts` texts, of
    `cascade` and of each of `others` (e.g. the teacher alone), timed in turn; keyed by name (cascade first)."""
    if len(test) == 0:
        raise UserError("Measuring a cascade needs test examples.", "give more labelled data.")
    models = {cascade.manifest.name: cascade, **(others or {})}
    labels = torch.tensor(test.aligned_to(cascade.manifest.labels).labels if cascade.manifest.labels else test.labels)
    cm = _cascade_of(cascade)
    acc: dict[str, float] = {}
    rates: dict[str, float] = {}
    for name, m in models.items():
        if (c := _cascade_of(m)) is not None:
            c.reset_counts()
        acc[name] = 100 * float((batched_logits(m, test.texts).argmax(-1) == labels).float().mean())
        if c is not None:
            rates[name] = c.escalation_rate
    texts = test.texts[:latency_texts]
    if cm is not None:
        cm.reset_counts()
    lat = interleaved_latencies(models, texts)
    out = {}
    for name, ms in lat.items():
        c = _cascade_of(models[name])
        arr = np.asarray(ms)
        out[name] = CascadeMeasurement(
            name=name, n=len(test), accuracy=acc[name], latency_n=len(texts), mean_ms=float(arr.mean()),
            p50_ms=float(np.percentile(arr, 50)), p95_ms=float(np.percentile(arr, 95)),
            escalation_rate=rates.get(name),
            latency_escalation_rate=None if c is None else c.escalated / max(1, c.rows),
        )
    return out


def calibrate_early_exit(model: LoadedModel, validation: TextDataset, max_drop: float, delta: float = 0.1,
                         max_length: int = 128) -> tuple[LoadedModel, ThresholdChoice]:
    """An early-exit model with its threshold chosen by the cascade's rule (harmful flips vs its own full path,
    Clopper-Pearson, fixed-sequence over the same grid); the manifest's early-exit step records it."""
    ee = model.model
    if not isinstance(ee, EarlyExitClassifier):
        raise UserError(f"{model.manifest.name} is not an early-exit model.", "pass a model of format early-exit.")
    data = validation.aligned_to(model.manifest.labels) if model.manifest.labels else validation
    logits = exit_logits_on(model, data.texts, max_length)
    layers = [*ee.exit_layers, ee.num_layers]
    labels = torch.tensor(data.labels)
    full_right = logits[-1].argmax(-1) == labels

    def right_at(t: float) -> torch.Tensor:
        return simulate_exits(logits, layers, t)[0] == labels

    t, _, bound = fixed_sequence(THRESHOLD_GRID, right_at, full_right, max_drop, delta)
    threshold = NEVER if t is None else t
    pred, depth = simulate_exits(logits, layers, threshold)
    right = pred == labels
    n = len(labels)
    choice = ThresholdChoice(
        threshold=threshold, passed=t is not None, n=n, harmful=int((full_right & ~right).sum()),
        helpful=int((right & ~full_right).sum()),
        drop_bound=bound if t is not None else 100 * clopper_pearson_upper(0, n, delta),
        escalation_rate=float((depth == layers[-1]).float().mean()), accuracy=100 * float(right.float().mean()),
        large_accuracy=100 * float(full_right.float().mean()),
        small_accuracy=100 * float((logits[0].argmax(-1) == labels).float().mean()), max_drop=max_drop, delta=delta)
    ee.threshold = threshold
    recipe = [dict(s) for s in model.manifest.recipe]
    for step in reversed(recipe):
        if step.get("stage") == "early-exit":
            step["config"] = {**step["config"], "threshold": threshold,
                              "validation": {**choice.to_dict(), "mean_layers": float(depth.float().mean())}}
            break
    return dataclasses.replace(model, manifest=dataclasses.replace(model.manifest, recipe=recipe)), choice


def early_exit_variant(folder: Path, base: LoadedModel, train: TextDataset, validation: TextDataset,
                       max_drop: float, measure: Callable[[Path], VariantResult]) -> VariantResult:
    """The search's early-exit model of `base`: exit heads trained on `train` with the backbone frozen (the full
    path stays `base`), the threshold chosen on `validation` by the cascade's rule so the loss vs `base` stays under
    `max_drop` points, saved to `folder/variants/early-exit` and measured with `measure`; UserError when no
    threshold keeps the bound."""
    config = DistillConfig(scheme="self", early_exit=EarlyExitConfig(threshold=1.0))  # chosen below instead
    model, choice = calibrate_early_exit(self_distill(base, train, validation, config), validation, max_drop)
    if not choice.passed:
        raise UserError(
            f"No early-exit threshold keeps the bound of the loss vs {base.manifest.name} under {max_drop} points "
            f"on {choice.n} validation rows.", "allow a larger --max-accuracy-drop, or give more validation data.")
    target = folder / "variants" / "early-exit"
    save_model(model, target)
    result = measure(target)
    result.path = str(target.relative_to(folder))
    layers = model.manifest.recipe[-1]["config"]["validation"]["mean_layers"]
    result.notes.append(f"threshold {choice.threshold:.3f} chosen on {choice.n} validation rows: "
                        f"{100 * (1 - choice.escalation_rate):.1f}% of them exit early, {layers:.2f} layers on "
                        f"average; loss vs {base.manifest.name} bounded by {choice.drop_bound:.2f} points")
    return result
