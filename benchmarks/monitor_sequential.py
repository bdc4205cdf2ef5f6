"""How often the rollout test decides wrongly when monitored continuously (seeded simulation, numpy only).

    .venv/bin/python benchmarks/monitor_sequential.py [--runs 1000] [--requests 2000]

Scenarios (alpha 0.05 for a wrong promotion and for a wrong rollback):
  equal@bounds   candidate equal to the current model; quality drop bound 0, error rate and p95 exactly at bounds:
                 any promotion and any rollback is wrong
  equal          candidate equal, realistic bounds (drop 0.02, errors 0.5% vs 1%, 3% over the p95 bound): any
                 rollback is wrong; promotions are right (power, requests needed)
  worse@X        candidate worse by exactly the allowed drop: any promotion is wrong
Each run checks the test after every request, every 10 and every 100 (a bound once shown stays shown). A naive
fixed-sample z-test on the accuracy difference, re-run every 10 requests, shows what peeking does.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_name

from infopt.monitor import RolloutTest, TestBounds

MIN_REQUESTS = 100


def _decide_at(checks: list, every: int, n: int) -> str | None:
    """The decision when the test is looked at every `every` requests (bad wins within one look)."""
    for t in range(every, n + every, every):
        t = min(t, n)
        if any(c.bad_at is not None and c.bad_at <= t for c in checks):
            return "rollback"
        if t >= MIN_REQUESTS and all(c.good_at is not None and c.good_at <= t for c in checks):
            return "promote"
    return None


def _run(rng: np.random.Generator, n: int, bounds: TestBounds, acc: tuple[float, float], err: float,
         slow: float) -> tuple[list, np.ndarray]:
    test = RolloutTest(bounds, points=0)
    test.add("error", (rng.random(n) < err).astype(float))
    test.add("slow", (rng.random(n) < slow).astype(float))
    cur = rng.random(n) < acc[0]
    # the candidate's correctness: equal to the current one's except on a share of requests
    flip = rng.random(n) < 0.1
    cand = np.where(flip, rng.random(n) < acc[1], cur if acc[0] == acc[1] else rng.random(n) < acc[1])
    d = cand.astype(float) - cur
    test.add("accuracy", (d + 1) / 2)
    test.add("agreement", (cand == cur).astype(float))
    return test.checks(), d


def _naive(d: np.ndarray, drop: float, every: int = 10) -> str | None:
    """Peeking: a one-sided z-test at 0.05 each way on the mean difference, re-run every `every` requests."""
    z = 1.645
    for t in range(max(every, 30), d.size + 1, every):
        x = d[:t]
        se = x.std(ddof=1) / math.sqrt(t) or 1e-9
        if (x.mean() + drop) / se < -z:
            return "rollback"
        if (x.mean() + drop) / se > z:
            return "promote"
    return None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--requests", type=int, default=2000)
    args = p.parse_args()
    print(f"machine: {cpu_name()}; {args.runs} runs of {args.requests} requests, alpha 0.05, min {MIN_REQUESTS}")
    scenarios = {
        "equal@bounds": (TestBounds(max_quality_drop=0.0, max_error_rate=0.01, max_p95_ms=50), (0.8, 0.8), 0.01,
                         0.05, ("promote", "rollback")),
        "equal": (TestBounds(max_quality_drop=0.02, max_error_rate=0.01, max_p95_ms=50), (0.8, 0.8), 0.005, 0.03,
                  ("rollback",)),
        "worse@X": (TestBounds(max_quality_drop=0.02, max_error_rate=0.01, max_p95_ms=50), (0.8, 0.78), 0.005,
                    0.03, ("promote",)),
    }
    for name, (bounds, acc, err, slow, wrong) in scenarios.items():
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        counts = {k: {"promote": 0, "rollback": 0, None: 0} for k in (1, 10, 100)}
        naive = {"promote": 0, "rollback": 0, None: 0}
        promote_at = []
        for _ in range(args.runs):
            checks, d = _run(rng, args.requests, bounds, acc, err, slow)
            for every in counts:
                counts[every][_decide_at(checks, every, args.requests)] += 1
            naive[_naive(d, bounds.max_quality_drop)] += 1
            if all(c.good_at for c in checks) and not any(c.bad_at for c in checks):
                promote_at.append(max(max(c.good_at for c in checks), MIN_REQUESTS))
        took = time.perf_counter() - start
        print(f"\n{name}: accuracy {acc[0]:.2f} -> {acc[1]:.2f}, error rate {err:g} (bound {bounds.max_error_rate:g}),"
              f" share over the p95 bound {slow:g} (bound 0.05), quality drop bound {bounds.max_quality_drop:g}"
              f" [{took:.1f} s]")
        for every, c in counts.items():
            rates = ", ".join(f"{k} {c[k] / args.runs:.3f}" + (" (wrong)" if k in wrong else "")
                              for k in ("promote", "rollback"))
            print(f"  checked every {every:>3} requests: {rates}, undecided {c[None] / args.runs:.3f}")
        rates = ", ".join(f"{k} {naive[k] / args.runs:.3f}" for k in ("promote", "rollback"))
        print(f"  naive z-test on quality every 10 requests: {rates}")
        if promote_at and "promote" not in wrong:
            print(f"  requests to promote: median {int(np.median(promote_at))}, "
                  f"p90 {int(np.percentile(promote_at, 90))}")


if __name__ == "__main__":
    main()
