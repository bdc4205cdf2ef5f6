"""Teacher alone vs a cascade (small model first, the teacher on the unsure rows), on the default task.

Builds the small model from the teacher by a recipe (default `onnx-int8`), chooses the threshold on the
validation split by risk control (Clopper-Pearson bound of the loss vs the teacher, fixed-sequence testing),
exports the cascade folder and reloads it (as `infopt serve` would), then measures teacher, small model and cascade
on the test split: accuracy (with n), batch-1 latency (mean / p50 / p95, tokenization included; the models take
turns text by text) and the escalation rate.

    .venv/bin/python benchmarks/cascade.py [--small onnx-int8] [--max-drop 0.5] [--delta 0.1]
        [--latency-texts 300] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from _machine import cpu_name

from infopt.data import TextDataset
from infopt.evaluate import BenchConfig, measure_variant
from infopt.models import BUNDLED_MODELS, bundled_path, load_model, save_model, weights_mb
from infopt.optimize import build, parse_recipes, plan_evaluation
from infopt.optimize._cascade import build_cascade, measure_cascade, validation_split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm-l6-rt")
    p.add_argument("--small", default="onnx-int8", help="recipe that makes the small model from the teacher")
    p.add_argument("--max-drop", type=float, default=0.5, help="allowed accuracy loss vs the teacher, points")
    p.add_argument("--delta", type=float, default=0.1, help="error level of the one-sided bound")
    p.add_argument("--latency-texts", type=int, default=300)
    p.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime threads (default: torch's)")
    args = p.parse_args()

    t_start = time.perf_counter()
    teacher = load_model(args.model)
    plan = plan_evaluation(teacher, None)
    test = TextDataset("test", plan.spec.texts, plan.spec.labels, list(teacher.manifest.labels))
    validation = validation_split(teacher)
    (recipe,) = parse_recipes([args.small], teacher.task)
    t0 = time.perf_counter()
    small = build(recipe, teacher, plan.inputs)
    built_s = time.perf_counter() - t0
    cascade = build_cascade(small, teacher, validation, args.max_drop, args.delta, name="cascade")
    choice = cascade.manifest.recipe[-1]["config"]["calibration"]
    with tempfile.TemporaryDirectory() as tmp:
        save_model(cascade, Path(tmp) / "cascade")
        size = weights_mb(Path(tmp) / "cascade")
        if args.threads:  # for the timing only (building and calibrating use every core)
            torch.set_num_threads(args.threads)
        reloaded = load_model(Path(tmp) / "cascade")  # what `infopt serve` runs; its ONNX sessions take the threads
        load_before = os.getloadavg()
        res = measure_cascade(reloaded, test, {"teacher": teacher, "small": reloaded.model.small}, args.latency_texts)
        load_after = os.getloadavg()
        # Each model alone, loaded in a fresh process and timed like every `infopt optimize` variant: no text-by-text
        # alternation between torch and ONNX Runtime (which slows the torch teacher on 2 cores).
        save_model(small, Path(tmp) / "small")
        folders = {"teacher": bundled_path(args.model) if args.model in BUNDLED_MODELS else Path(args.model),
                   "small": Path(tmp) / "small", "cascade": Path(tmp) / "cascade"}
        alone = {name: measure_variant(folder, plan.spec, BenchConfig(threads=args.threads))
                 for name, folder in folders.items()}
    teacher_mb = weights_mb(folders["teacher"])

    print(f"CPU: {cpu_name()}; load average before/after timing {load_before[0]:.2f} / {load_after[0]:.2f} "
          "(other processes share these cores)")
    print(f"threads: {torch.get_num_threads()}")
    print(f"small model: recipe {args.small} (built in {built_s:.0f} s); large model: the teacher {args.model}")
    print(f"threshold {choice['threshold']:.6f} chosen on {choice['n']} validation rows: {choice['rule']}; "
          f"delta {args.delta}, max drop {args.max_drop} points")
    print(f"  validation: escalation {100 * choice['escalation_rate']:.1f}%, harmful flips {choice['harmful']}, "
          f"helpful {choice['helpful']}, bound of the loss {choice['drop_bound']:.3f} points; accuracy small "
          f"{choice['small_accuracy']:.2f}, teacher {choice['large_accuracy']:.2f}, cascade {choice['accuracy']:.2f}")
    print()
    header = f"{'model':<10}{'acc %':>8}{'n':>6}{'mean ms':>9}{'p50 ms':>8}{'p95 ms':>8}{'escal.':>8}{'MB':>7}"
    print(header)
    print("-" * len(header))
    sizes = {"teacher": teacher_mb, "small": None, "cascade": size}
    for name in ("teacher", "small", "cascade"):
        r = res[name]
        esc = f"{100 * r.escalation_rate:.1f}%" if r.escalation_rate is not None else "-"
        mb = f"{sizes[name]:.1f}" if sizes[name] is not None else "-"
        print(f"{name:<10}{r.accuracy:>8.2f}{r.n:>6}{r.mean_ms:>9.2f}{r.p50_ms:>8.2f}{r.p95_ms:>8.2f}{esc:>8}{mb:>7}")
    t, c = res["teacher"], res["cascade"]
    print()
    print(f"cascade / teacher: mean latency x{c.mean_ms / t.mean_ms:.2f} ({100 * (1 - c.mean_ms / t.mean_ms):.0f}% "
          f"lower), p50 x{c.p50_ms / t.p50_ms:.2f}, p95 x{c.p95_ms / t.p95_ms:.2f}; accuracy "
          f"{c.accuracy - t.accuracy:+.2f} points (one test review = {100 / t.n:.2f} points)")
    print(f"escalation: {100 * (c.escalation_rate or 0):.1f}% of the {c.n} test rows, "
          f"{100 * (c.latency_escalation_rate or 0):.1f}% of the {c.latency_n} timed texts")
    print()
    print("each model alone, in a fresh process (as infopt optimize measures variants), batch 1 over "
          f"{len(plan.spec.speed_texts)} test texts:")
    for name, v in alone.items():
        print(f"{name:<10}{v.quality['accuracy']:>8.2f}{v.n_eval:>6}{statistics.mean(v.speed.samples_ms):>9.2f}"
              f"{v.speed.p50_ms:>8.2f}{v.speed.p95_ms:>8.2f}   {v.speed.throughput:.0f} items/s at batch 32")
    t_mean, c_mean = (statistics.mean(alone[n].speed.samples_ms) for n in ("teacher", "cascade"))
    print(f"cascade / teacher, alone: mean latency x{c_mean / t_mean:.2f} ({100 * (1 - c_mean / t_mean):.0f}% lower)")
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
