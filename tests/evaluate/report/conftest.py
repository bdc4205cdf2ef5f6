"""Hand-built results for the report tests: an optimizer run with every field, and an older fixed-recipes run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from infopt.evaluate import RunResult, SpeedResult, VariantResult


def variant(
    name: str, p50: float, throughput: float, size: float, quality: dict[str, float], method: str = "original",
    decode: float | None = None, notes: list[str] | None = None, rss: float = 512.4, **extra: Any,
) -> VariantResult:
    """A variant with p95 = 1.5 x p50 and 22.7M params; `extra` sets the optimizer's fields."""
    speed = {k: extra.pop(k) for k in ("samples_ms", "interleaved_p50_ms") if k in extra}
    return VariantResult(
        name=name, method=method, task="classification", quality=quality,
        speed=SpeedResult(p50_ms=p50, p95_ms=p50 * 1.5, p99_ms=p50 * 2, throughput=throughput, batch_size=32,
                          threads=4, decode_tokens_per_s=decode, **speed),
        size_mb=size, peak_rss_mb=rss, params=22_713_216, path=f"variants/{name}", fingerprint=f"fp-{name}",
        notes=notes or [], **extra,
    )


def run_of(*variants: VariantResult, task: str = "classification", metric: str = "accuracy", **extra: Any) -> RunResult:
    env = {"python": "3.11.9", "seed": 0, "cpu": "Test CPU", "cpu_count": 2, "versions": {"torch": "2.13.0"}}
    return RunResult(model="minilm-l6", task=task, data="rotten-tomatoes", variants=list(variants), environment=env,
                     quality_metric=metric, **extra)


def mixed_run() -> RunResult:
    """An older results file: no intervals, no statuses, no requirements (the `--recipes` mode)."""
    return run_of(
        variant("baseline", 10.0, 100.0, 100.0, {"accuracy": 90.0}),
        variant("fast", 5.0, 200.0, 25.0, {"accuracy": 89.5}, method="quantize:dynamic-int8"),
        variant("slow", 20.0, 50.0, 120.0, {"accuracy": 91.0}, method="prune", notes=["needs sparse kernels"]),
    )


def _samples(p50: float, seed: int, n: int = 200) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(float(x), 3) for x in p50 * rng.lognormal(0.0, 0.12, n)]


def optimizer_run() -> RunResult:
    """A run as the optimizer writes it: statuses, intervals, flips, samples, decisions, machine and price."""
    n = 1280
    specs = [  # name, recipe, method, acc, ci, delta_ci, flips, p50, tp, size, rss, status, reasons
        ("minilm-l6-rt (baseline)", "", "original", 85.08, [83.13, 87.03], None, None, 11.8, 160.0, 90.9, 626,
         "baseline", []),
        ("onnx-int8", "onnx-int8", "quantize:onnx-int8", 85.00, [83.05, 86.95], [-0.55, 0.39], 9, 4.6, 350.0,
         23.0, 779, "kept", ["on the Pareto front; slower than distill-l3+onnx-int8"]),
        ("prune-structured", "prune-structured", "prune:structured", 83.91, [81.88, 85.86], [-1.95, -0.47], 41,
         8.5, 210.0, 70.2, 640, "rejected", ["accuracy drop 1.17 points > the 1.00 allowed"]),
        ("prune-structured+onnx-int8", "prune-structured+onnx-int8", "prune:structured -> quantize:onnx-int8",
         83.75, [81.72, 85.70], [-2.11, -0.62], 47, 3.7, 410.0, 17.8, 770, "rejected",
         ["accuracy drop 1.33 points > the 1.00 allowed"]),
        ("torch-bf16", "torch-bf16", "quantize:bf16", 85.08, [83.13, 87.03], [-0.16, 0.16], 2, 13.9, 150.0, 45.5,
         700, "dominated", ["onnx-int8 is faster, smaller and as accurate"]),
        ("distill-l3+onnx-int8", "distill-l3+onnx-int8", "distill:l3 -> quantize:onnx-int8", 84.53,
         [82.50, 86.48], [-1.09, -0.02], 30, 1.9, 820.0, 12.1, 690, "chosen",
         ["fastest variant within the 1.00-point accuracy bound (drop 0.55 [0.02, 1.09])"]),
    ]
    variants = []
    for k, (name, recipe, method, acc, ci, dci, flips, p50, tp, size, rss, status, reasons) in enumerate(specs):
        variants.append(variant(
            name, p50, tp, size, {"accuracy": acc, "macro_f1": acc - 0.3}, method=method, rss=rss, recipe=recipe,
            n_eval=n, quality_ci={"accuracy": ci}, flips=flips, delta_ci=dci, status=status, reasons=reasons,
            cost_per_1k=0.5 * p50 / 3600, samples_ms=_samples(p50, k), interleaved_p50_ms=round(p50 * 1.03, 3),
        ))
    decisions = [
        {"variant": "onnx-int8", "action": "built and measured", "why": "int8 first on this CPU (AVX2, no VNNI)",
         "seconds": 41.0},
        {"variant": "prune-structured", "action": "rejected early", "why": "the accuracy bound already misses",
         "seconds": 95.0},
        {"variant": "openvino-int8", "action": "skipped", "why": "OpenVINO is not installed", "seconds": 0.0},
        {"variant": "distill-l3+onnx-int8", "action": "chosen", "why": "fastest within the bound", "seconds": 300.0},
    ]
    return run_of(
        *variants,
        machine={"cpu": "AMD EPYC 7B13", "cores": 2, "flags": {"avx2": True, "avx512": False, "vnni": False,
                                                               "amx": False}, "memory_bandwidth_gb_s": 11.4},
        requirements={"priority": "latency", "max_accuracy_drop": 1.0, "time_budget_s": 1200},
        decisions=decisions, chosen="distill-l3+onnx-int8",
        recommendation="Use distill-l3+onnx-int8: 6.2x faster at batch 1 and 7.5x smaller than minilm-l6-rt, "
                       "0.55 points less accurate (within the 1-point bound).",
        seconds=912.0, price_per_hour=0.5,
    )


@pytest.fixture
def make_variant() -> Callable[..., VariantResult]:
    return variant


@pytest.fixture
def make_run() -> Callable[..., RunResult]:
    return run_of


@pytest.fixture
def mixed() -> RunResult:
    return mixed_run()


@pytest.fixture
def optimized() -> RunResult:
    return optimizer_run()
