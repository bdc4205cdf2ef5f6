"""The main job on the default teacher, timed, with the int8 targets checked against fp32 in the same run.

Run: .venv/bin/python benchmarks/default_job.py [--output DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from infopt.evaluate import print_table
from infopt.models import BUNDLED_MODELS
from infopt.optimize import OptimizeConfig, optimize


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    output = Path(args.output or tempfile.mkdtemp(prefix="infopt-bench-")) / "default-job"
    cached = BUNDLED_MODELS["minilm-l6-rt"].is_cached()
    t0 = time.perf_counter()
    run, folder = optimize(OptimizeConfig(output=output))
    minutes = (time.perf_counter() - t0) / 60
    print_table(run)
    base = run.baseline
    print(f"\nratios against the fp32 PyTorch teacher ({base.speed.threads} threads), same run:")
    print(f"{'variant':<20} {'p50 speed-up':>12} {'acc drop':>9} {'size ratio':>10}  meets int8 target")
    best = None
    for v in run.variants[1:]:
        speed = base.speed.p50_ms / v.speed.p50_ms
        drop = base.quality["accuracy"] - v.quality["accuracy"]
        size = v.size_mb / base.size_mb
        ok = speed >= 2.5 and drop <= 0.5 and size <= 0.30
        print(f"{v.name:<20} {speed:>11.2f}x {drop:>8.2f} {size:>10.2f}  {'yes' if ok else 'no'}")
        if "int8" in v.name and drop <= 0.5 and size <= 0.30 and (best is None or speed > best[1]):
            best = (v.name, speed)
    if best:
        print(f"best int8 variant within quality and size limits: {best[0]} ({best[1]:.2f}x p50 speed-up)")
    else:
        print("no int8 variant within the quality and size limits")
    print(f"infopt optimize took {minutes:.1f} min ({'teacher cached' if cached else 'teacher fine-tuned first'}); "
          f"report: {folder / 'report.md'}")


if __name__ == "__main__":
    main()
