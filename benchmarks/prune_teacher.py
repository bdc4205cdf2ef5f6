"""Pruning the default teacher (MiniLM-L6 on Rotten Tomatoes), every variant measured side by side in one run.

Variants: the teacher; int8 alone (torch dynamic-int8-emb and ONNX Runtime onnx-int8, for reference); structured
pruning + recovery (a third of the heads, half the FFN neurons; `structured-5L` also removes the least influential
layer); each + torch int8 and + ONNX int8; unstructured magnitude 50% and 90% (+ recovery). Each is saved,
loaded back from disk and scored on the whole test split. Batch-1 latency (tokenization included) is measured in
interleaved rounds (every variant once per round, the median of the rounds' p50s reported), so that load from other
processes hits all variants alike.

Run: .venv/bin/python benchmarks/prune_teacher.py [--rounds 7] [--threads 1,2] [--structured-epochs 1]
    [--recover-epochs 0.33] [--output DIR]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from infopt.compress.prune import MagnitudeConfig, PruneConfig, RecoveryConfig, StructuredConfig, prune
from infopt.compress.quantize import quantize
from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.evaluate import classification_quality, interleaved_p50_ms
from infopt.models import LoadedModel, load_model, save_model, weights_mb

INT8 = {"int8": "dynamic-int8-emb", "ort-int8": "onnx-int8"}
STRUCTURED = ("structured", "structured-5L")
BOTH = [f"{s}+{q}" for s in STRUCTURED for q in INT8]
NAMES = ["teacher", "int8 only", "ort-int8 only", "structured", "structured-5L", *BOTH,
         "unstructured-50", "unstructured-90"]
TARGETS = {"structured": "structured + recovery: >= 1.5x faster, <= 1.5 pts accuracy drop"}
TARGETS |= {name: "structured + int8: >= 3.5x faster, >= 4x smaller, <= 2 pts accuracy drop" for name in BOTH}


def _configs(structured_epochs: float, epochs: float) -> dict[str, PruneConfig]:
    recovery, longer = RecoveryConfig(epochs=epochs), RecoveryConfig(epochs=structured_epochs)
    return {
        "structured": StructuredConfig(heads=1 / 3, ffn=0.5, importance="taylor", calibration_size=512,
                                       recovery=longer),
        "structured-5L": StructuredConfig(heads=1 / 3, ffn=0.5, layers=1, importance="taylor", calibration_size=512,
                                          recovery=longer),
        "unstructured-50": MagnitudeConfig(sparsity=0.5, recovery=recovery),
        "unstructured-90": MagnitudeConfig(sparsity=0.9, steps=3, recovery=recovery),
    }


def _report(loaded: dict[str, LoadedModel], quality: dict[str, float], sizes: dict[str, float],
            p50: dict[str, float], threads: int) -> None:
    base = "teacher"
    print(f"\n{threads} thread(s):")
    print(f"{'variant':<22} {'accuracy':>8} {'drop':>6} {'p50 ms':>7} {'speed-up':>8} {'MB':>6} {'smaller':>7} "
          f"{'params':>10}  format")
    for name, m in loaded.items():
        print(f"{name:<22} {quality[name]:>8.2f} {quality[base] - quality[name]:>6.2f} {p50[name]:>7.2f} "
              f"{p50[base] / p50[name]:>7.2f}x {sizes[name]:>6.1f} {sizes[base] / sizes[name]:>6.2f}x "
              f"{m.num_parameters():>10,}  {m.manifest.format}")
    checks = {"structured": p50[base] / p50["structured"] >= 1.5 and quality[base] - quality["structured"] <= 1.5}
    for name in BOTH:
        checks[name] = (p50[base] / p50[name] >= 3.5 and sizes[base] / sizes[name] >= 4
                        and quality[base] - quality[name] <= 2.0)
    for name, ok in checks.items():
        print(f"  {'MET' if ok else 'MISSED'} at {threads} thread(s) by {name}: {TARGETS[name]}")
    for name in ("unstructured-50", "unstructured-90"):
        speed = p50[base] / p50[name]
        verdict = ("no speed-up on this CPU: the zeros are still multiplied (weights are dense in memory)"
                   if speed < 1.1 else f"{speed:.2f}x faster")
        print(f"  {name}: {sizes[base] / sizes[name]:.2f}x smaller on disk (bitmask + values), {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
    parser.add_argument("--threads", default="1,2", help="torch intra-op thread counts to time at, e.g. 1,2")
    parser.add_argument("--structured-epochs", type=float, default=1.0, help="recovery of the structured variants")
    parser.add_argument("--recover-epochs", type=float, default=1 / 3, help="recovery of the unstructured variants")
    parser.add_argument("--output", default=None, help="folder for the variants (default: a temp folder); "
                        "variants already saved there are reused")
    args = parser.parse_args()
    out = Path(args.output or tempfile.mkdtemp(prefix="infopt-prune-"))
    splits = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0)
    teacher = load_model("minilm-l6-rt")
    calibration = splits.train.texts[:128]

    def folder(name: str) -> Path:
        return out / name.replace(" ", "-").replace("+", "_")

    def build(name: str, make: Callable[[], LoadedModel]) -> None:
        if not (folder(name) / "infopt.json").exists():  # variants already in --output are reused
            t0 = time.perf_counter()
            model = make()
            save_model(model, folder(name))
            print(f"built {name} in {time.perf_counter() - t0:.0f} s: {model.manifest.metrics}", flush=True)

    build("teacher", lambda: teacher)
    for short, scheme in INT8.items():
        build(f"{short} only", functools.partial(quantize, teacher, scheme, calibration=calibration))
    for name, config in _configs(args.structured_epochs, args.recover_epochs).items():
        build(name, functools.partial(prune, teacher, config, calibration=calibration, train=splits.train))
    def quantized(pruned: str, scheme: str) -> LoadedModel:
        return quantize(load_model(folder(pruned)), scheme, calibration=calibration)

    for name in STRUCTURED:
        for short, scheme in INT8.items():  # the pruned folder is read only when this variant is not saved yet
            build(f"{name}+{short}", functools.partial(quantized, name, scheme))

    sizes = {name: weights_mb(folder(name)) for name in NAMES}
    quality: dict[str, float] = {}
    texts = splits.test.texts[:200]
    print(f"\nminilm-l6-rt pruning, Rotten Tomatoes test split ({len(splits.test)} texts); recovery "
          f"{args.structured_epochs:.2f} epoch (structured) / {args.recover_epochs:.2f} (unstructured), distilled "
          f"from the teacher; batch-1 latency (tokenization included), median of {args.rounds} interleaved rounds")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)  # ONNX Runtime sessions take their thread count when loaded
        loaded = {name: load_model(folder(name)) for name in NAMES}
        quality = quality or {name: classification_quality(m, splits.test)["accuracy"] for name, m in loaded.items()}
        _report(loaded, quality, sizes, interleaved_p50_ms(loaded, texts, args.rounds), threads)
    print(f"variants in {out}")


if __name__ == "__main__":
    main()
