"""The search: measure the baseline, try the candidates in order while the budget allows, accept only variants that
meet every requirement, recover those that miss only the accuracy bound, keep the Pareto front, re-measure it in
interleaved rounds and choose by the priority.

Building and measuring go through a `Bench` (the real one builds each variant and measures it in a fresh process;
tests give a fake), and time through `clock`, so the rule is tested in seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from infopt._atomic import DiskFull
from infopt.errors import InfoptError, MissingDependency, NotApplicable
from infopt.evaluate import VariantResult
from infopt.optimize._candidates import Candidate
from infopt.optimize._recipes import Recipe, stage_of
from infopt.optimize._requirements import LOWER_IS_BETTER, Requirements

__all__ = ["SENSITIVE_LAYERS", "Bench", "SearchOutcome", "cascade_pair", "early_exit_room", "fallback", "numbers",
           "pareto_front", "search"]

LATENCY_TIE = 0.10
"""For --priority latency, variants within this share of the fastest p50 count as tied; the tie goes to the more
accurate, then the smaller. (On a 2-core AMD EPYC two int8 variants swapped order between their fresh-process and
their interleaved p50s: 4.23 vs 3.92 ms, then 3.73 vs 4.01 ms.)"""

SENSITIVE_LAYERS = ("*.output.dense", "*.down_proj", "*.fc2", "classifier", "score")
"""Kept in float by the accuracy-aware fallback: FFN down-projections (BERT's `*.output.dense` also matches the
attention output), whose post-GELU inputs are the most heavy-tailed, and the classifier head."""


class Bench(Protocol):
    """What the search needs from the machine: measured variants, and the prefixes built so far."""

    built: set[str]
    """`prefix_key`s of the step prefixes built in this run (their cost is not counted again)."""

    def baseline(self) -> VariantResult: ...

    def variant(self, recipe: Recipe) -> VariantResult:
        """Build and measure; NotApplicable / MissingDependency mean "skip this one"."""
        ...

    def p95_at_batch(self, result: VariantResult, batch_size: int) -> float: ...

    def interleaved(self, results: Sequence[VariantResult]) -> dict[str, float]:
        """Name -> batch-1 p50 ms from interleaved rounds of all of them in one process."""
        ...

    def cascade(self, small: VariantResult, large: VariantResult, max_drop: float) -> VariantResult:
        """Build the cascade `small` -> `large` (threshold calibrated so the loss vs `large` stays under `max_drop`)
        and measure it like a variant; InfoptError when it cannot be built."""
        ...

    def early_exit(self, max_drop: float) -> VariantResult:
        """Build the baseline's early-exit model (threshold calibrated so the loss vs the baseline stays under
        `max_drop`) and measure it like a variant; InfoptError when it cannot be built."""
        ...


@dataclass
class SearchOutcome:
    """What the search found: the measured variants (baseline first, with status and reasons) and the log."""

    variants: list[VariantResult]
    decisions: list[dict[str, Any]]
    chosen: str | None
    recommendation: str
    closest: str | None = None
    """When nothing was chosen: the variant that came closest, and (in `closest_misses`) what it misses."""
    closest_misses: list[str] = field(default_factory=list)


def fallback(recipe: Recipe) -> Recipe | None:
    """The accuracy-aware fallback of a recipe ending in quantization: the same scheme with the sensitive layers
    kept in float (None when its last step is not a quantization or already keeps them)."""
    last = recipe.steps[-1] if recipe.steps else None
    if last is None or stage_of(last) != "quantize" or not hasattr(last, "exclude"):
        return None
    exclude = tuple(dict.fromkeys((*last.exclude, *SENSITIVE_LAYERS)))
    if exclude == tuple(last.exclude):
        return None
    step = dataclasses.replace(last, exclude=exclude)
    return Recipe(f"{recipe.name}-keep-fp32", f"{recipe.about}; FFN output projections and classifier kept in float",
                  (*recipe.steps[:-1], step))


def numbers(v: VariantResult, metric: str) -> str:
    """The measured numbers of a variant in one phrase."""
    q = v.quality.get(metric, float("nan"))
    parts = [f"{metric} {q:.4g}"]
    if not math.isnan(v.speed.p50_ms):
        parts += [f"p50 {v.speed.p50_ms:.2f} ms", f"p95 {v.speed.p95_ms:.2f} ms",
                  f"{v.speed.throughput:.0f} items/s at batch {v.speed.batch_size}"]
    parts += [f"{v.size_mb:.1f} MB", f"peak RSS {v.peak_rss_mb:.0f} MB"]
    return ", ".join(parts)


def _better_quality(a: float, b: float, metric: str) -> bool:
    return a < b if metric in LOWER_IS_BETTER else a > b


def _dominates(a: VariantResult, b: VariantResult, metric: str) -> bool:
    qa, qb = a.quality.get(metric, math.nan), b.quality.get(metric, math.nan)
    sign = -1 if metric in LOWER_IS_BETTER else 1
    ka = (sign * qa, -a.speed.p50_ms, a.speed.throughput, -a.size_mb)
    kb = (sign * qb, -b.speed.p50_ms, b.speed.throughput, -b.size_mb)
    return all(x >= y for x, y in zip(ka, kb, strict=True)) and ka != kb


def pareto_front(variants: Sequence[VariantResult], metric: str) -> list[VariantResult]:
    """Those no other variant beats on (quality, batch-1 p50, throughput, size) at once."""
    return [v for v in variants if not any(_dominates(o, v, metric) for o in variants if o is not v)]


def cascade_pair(results: Sequence[VariantResult], req: Requirements,
                 metric: str) -> tuple[VariantResult, VariantResult, float] | None:
    """(small, large, allowed drop vs large) for a cascade worth trying, or None.

    large: the most accurate of the baseline and the accepted variants; small: the fastest measured variant that
    misses at most the accuracy bound and takes at most half of large's p50 (escalated rows pay for both models).
    Classifiers only (the cascade's rule bounds an accuracy loss); not for --priority cost (a cascade's
    cost per request follows its mean latency, not the p50 that priority compares) or size (it holds both models)."""
    base = results[0]
    if (base.task != "classification" or metric in LOWER_IS_BETTER or req.priority in ("cost", "size")
            or metric not in base.quality):
        return None
    plain = [v for v in results if v.method != "cascade" and not math.isnan(v.speed.p50_ms)]
    anchors = [v for v in plain if v is base or not v.reasons]
    if not anchors:
        return None
    large = max(anchors, key=lambda v: (v.quality.get(metric, -math.inf), -v.speed.p50_ms))
    room = req.allowed_drop(base.quality[metric]) - (base.quality[metric] - large.quality[metric])
    fast = [v for v in plain if v is not base and v is not large and 2 * v.speed.p50_ms <= large.speed.p50_ms
            and (not v.reasons or (len(v.reasons) == 1 and req.quality_miss(v, base, metric) is not None))]
    if room <= 0 or not fast:
        return None
    return min(fast, key=lambda v: v.speed.p50_ms), large, room


def early_exit_room(results: Sequence[VariantResult], req: Requirements, metric: str) -> float | None:
    """The accuracy points an early-exit model of the baseline may lose, or None when none is worth trying:
    classifiers only, for --priority latency or throughput (it cannot be more accurate than the baseline, it
    holds all of it, and its cost follows its mean latency)."""
    base = results[0]
    if (base.task != "classification" or metric in LOWER_IS_BETTER or req.priority not in ("latency", "throughput")
            or metric not in base.quality or math.isnan(base.speed.p50_ms)):
        return None
    room = req.allowed_drop(base.quality[metric])
    return room if room > 0 else None


def _p50(v: VariantResult) -> float:
    return v.speed.interleaved_p50_ms if v.speed.interleaved_p50_ms is not None else v.speed.p50_ms


def _choose(front: list[VariantResult], req: Requirements, metric: str) -> VariantResult | None:
    if not front:
        return None
    sign = 1 if metric in LOWER_IS_BETTER else -1
    if req.priority == "latency":  # near-ties (within LATENCY_TIE) go to quality, then size
        top = min(front, key=_p50)
        near = [v for v in front if _p50(v) <= (1 + LATENCY_TIE) * _p50(top)
                and not v.speed.p95_ms > 2 * top.speed.p95_ms]  # a tail twice the fastest's (a cascade) is no tie
        return min(near, key=lambda v: (sign * v.quality.get(metric, math.nan), v.size_mb, _p50(v)))
    if req.priority == "throughput":
        return max(front, key=lambda v: v.speed.throughput)
    if req.priority == "size":
        return min(front, key=lambda v: (round(v.size_mb, 1), _p50(v)))
    if req.priority == "accuracy":
        return min(front, key=lambda v: (sign * v.quality.get(metric, math.nan), _p50(v)))
    cheapest = min(_p50(v) for v in front)  # cost: per 1,000 requests at batch 1; near-ties go to less memory
    return min((v for v in front if _p50(v) <= 1.05 * cheapest), key=lambda v: (v.peak_rss_mb, _p50(v)))


def _ratio(base: VariantResult, v: VariantResult) -> str:
    speed = base.speed.p50_ms / v.speed.p50_ms if v.speed.p50_ms else math.nan
    if v.speed.interleaved_p50_ms and base.speed.interleaved_p50_ms:
        speed = base.speed.interleaved_p50_ms / v.speed.interleaved_p50_ms
    size = base.size_mb / v.size_mb if v.size_mb else math.nan
    return f"{speed:.1f}x faster at batch 1, {size:.1f}x smaller"


_WHY_PRIORITY = {"latency": "the lowest batch-1 p50 (interleaved rounds; within 10%: the most accurate, then the "
                            "smallest)", "throughput": "the most items/s",
                 "size": "the smallest on disk", "accuracy": "the most accurate",
                 "cost": "the lowest cost per 1,000 requests (near-ties: the least memory)"}


def _recommend(chosen: VariantResult, base: VariantResult, req: Requirements, metric: str, n_ok: int) -> str:
    q, b = chosen.quality.get(metric, math.nan), base.quality.get(metric, math.nan)
    return (f"Use {chosen.name}: {_ratio(base, chosen)} than {base.name}, {metric} {q:.4g} ({q - b:+.2f}); "
            f"{_WHY_PRIORITY[req.priority]} of the {n_ok} variant{'s' if n_ok != 1 else ''} meeting every "
            "requirement on this machine.")


def _closest(rejected: Sequence[VariantResult], base: VariantResult, req: Requirements,
             metric: str) -> VariantResult | None:
    """The rejected variant with the fewest misses, then the smallest shortfall against its bounds."""
    return min(rejected, key=lambda v: (len(v.reasons), req.shortfall(v, base, metric))) if rejected else None


@dataclass
class _Tried:
    name: str
    action: str
    seconds: float = 0.0
    result: VariantResult | None = None
    skipped: str = ""


def _judge(bench: Bench, v: VariantResult, base: VariantResult, req: Requirements, metric: str) -> bool:
    """Set `v`'s reasons and status against every requirement; True when it misses the accuracy bound only."""
    p95b = None
    if req.max_p95_ms is not None and req.p95_batch_size != 1 and not math.isnan(v.speed.p50_ms):
        p95b = bench.p95_at_batch(v, req.p95_batch_size)
    v.reasons = req.misses(v, base, metric, p95b)
    quality_only = len(v.reasons) == 1 and req.quality_miss(v, base, metric) is not None
    if req.priority == "latency" and not v.speed.p50_ms < base.speed.p50_ms and not math.isnan(v.speed.p50_ms):
        v.reasons.append(f"slower at batch 1 than the baseline ({v.speed.p50_ms:.2f} vs "
                         f"{base.speed.p50_ms:.2f} ms): never chosen for latency")
        quality_only = False
    v.status = "rejected" if v.reasons else "kept"
    return quality_only


def search(bench: Bench, candidates: Sequence[Candidate], req: Requirements, metric: str, *,
           budget: bool = True, recover: bool = True, cascades: bool = True,
           clock: Callable[[], float] = time.monotonic,
           log: Callable[[str], None] = lambda line: None, reserve_s: float = 10.0,
           started: float | None = None) -> SearchOutcome:
    """Run the search (see the module docstring). With `budget=False` every candidate is tried (`--recipes`: then
    only NotApplicable / MissingDependency skip one, other errors stop the run, as the user named it; in a search
    any InfoptError of a candidate skips it); `reserve_s`, plus the time of the final interleaved rounds of every
    variant so far (from the baseline's p50), is kept back. `started` (a `clock` reading) counts the time spent
    before the search (loading, data) against the budget."""
    skip: tuple[type[InfoptError], ...] = (NotApplicable, MissingDependency) if not budget else (InfoptError,)
    t0 = clock() if started is None else started
    before = clock()
    base = bench.baseline()
    base.status = "baseline"
    base_s = clock() - before
    log(f"baseline: {numbers(base, metric)}")
    # the final interleaved rounds: 7 rounds of >= 1.5 s or 35 calls per model (see interleaved_p50_ms)
    per_round = 7 * max(1.5, 35 * base.speed.p50_ms / 1000) if not math.isnan(base.speed.p50_ms) else 10.5
    results, tried = [base], []
    queue = list(candidates)
    ratios: list[float] = []

    def attempt(name: str, est: float, about: str, run: Callable[[], VariantResult]) -> tuple[VariantResult | None,
                                                                                            float]:
        """(the variant, seconds) when its estimate fits the budget and it builds; else logs why not: (None, 0)."""
        left = req.time_budget_s - (clock() - t0) - reserve_s - per_round * len(results)
        if budget and est > left:
            why = f"estimated {est:.0f} s, {max(left, 0):.0f} s of the budget left"
            tried.append(_Tried(name, "skipped: it does not fit the time budget", skipped=why))
            log(f"skipped {name}: {why}")
            return None, 0.0
        start = clock()
        try:
            log(f"building and measuring {name} ({about}; about {est:.0f} s)")
            return run(), clock() - start
        except skip as e:
            if isinstance(e, DiskFull):  # not the candidate's fault: every later one would fail alike
                raise
            tried.append(_Tried(name, "skipped: it does not apply", clock() - start, skipped=str(e)))
            log(f"skipped {name}: {e}")
            return None, 0.0

    def record(v: VariantResult, action: str, seconds: float) -> bool:
        """Judge `v`, keep it and log it; True when it misses the accuracy bound only."""
        quality_only = _judge(bench, v, base, req, metric)
        results.append(v)
        tried.append(_Tried(v.recipe, action, seconds, v))
        log(f"{v.recipe}: {numbers(v, metric)}; " + ("meets every requirement" if not v.reasons
                                                     else "misses: " + "; ".join(v.reasons)))
        return quality_only

    while queue:
        cand = queue.pop(0)
        raw = cand.cost_after(bench.built)
        est = raw * (min(max(statistics.median(ratios), 0.3), 3.0) if ratios else 1.0)
        v, secs = attempt(cand.name, est, cand.reason, functools.partial(bench.variant, cand.recipe))
        if v is None:
            continue
        if raw > 0:
            ratios.append(secs / raw)
        v.recipe = v.recipe or cand.name
        quality_only = record(v, f"built ({cand.reason}) and measured in a fresh process", secs)
        if recover and quality_only and (fb := fallback(cand.recipe)) is not None:
            queue.insert(0, Candidate(fb, f"recovery of {cand.name}, which missed only the accuracy bound",
                                      cand.step_costs, cand.measure_cost))
    pair = cascade_pair(results, req, metric) if cascades else None
    if pair is not None:
        small, large, room = pair
        name = f"cascade({small.name}>{large.recipe or 'baseline'})"
        measured = [t.seconds for t in tried if t.result is not None]
        est = 1.5 * statistics.median(measured) if measured else base_s
        v, secs = attempt(name, est, f"small model first, {large.name} on the rows it is unsure of",
                          functools.partial(bench.cascade, small, large, room))
        if v is not None:
            v.name = v.recipe = name
            record(v, f"built from {small.name} and {large.name}, threshold calibrated on the validation split so "
                      f"the loss vs {large.name} stays under {room:.2f} points, measured in a fresh process", secs)
    exit_room = early_exit_room(results, req, metric) if cascades else None
    if exit_room is not None:
        # the baseline over the train split (8x the test split) and a measurement: 69 s against the baseline's
        # 19 s on a 2-core AMX Xeon
        v, secs = attempt("early-exit", 3.5 * base_s, f"exit heads on the shallow layers of {base.name}, trained on "
                          "its own outputs", functools.partial(bench.early_exit, exit_room))
        if v is not None:
            v.name = v.recipe = "early-exit"
            record(v, f"exit heads trained on the train split with the backbone frozen, threshold calibrated on the "
                      f"validation split so the loss vs the baseline stays under {exit_room:.2f} points, measured "
                      "in a fresh process", secs)
    return _finish(bench, results, tried, req, metric, base_s)


def _finish(bench: Bench, results: list[VariantResult], tried: list[_Tried], req: Requirements, metric: str,
            base_s: float) -> SearchOutcome:
    base = results[0]
    accepted = [v for v in results[1:] if not v.reasons]
    front = pareto_front(accepted, metric)
    for v in accepted:
        if v not in front:
            by = next(o for o in front if _dominates(o, v, metric))
            v.status, v.reasons = "dominated", [f"dominated by {by.name} ({numbers(by, metric)})"]
    if front:
        p50s = bench.interleaved([base, *front])
        for v in (base, *front):
            v.speed.interleaved_p50_ms = p50s.get(v.name)
    eligible = list(front)
    ref = base.speed.interleaved_p50_ms
    if req.priority == "latency" and ref is not None:
        for v in front:
            mine = v.speed.interleaved_p50_ms
            if mine is not None and not mine < ref:
                v.reasons.append(f"slower than the baseline in the interleaved rounds ({mine:.2f} vs {ref:.2f} ms): "
                                 "never chosen for latency")
                eligible.remove(v)
    if req.price_per_hour is not None:
        for v in results:
            if not math.isnan(_p50(v)):
                v.cost_per_1k = req.price_per_hour * _p50(v) / 3600
    chosen = _choose(eligible, req, metric)
    for v in front:
        if v is not chosen and not v.reasons:
            v.reasons = [f"meets every requirement, on the Pareto front (no variant beats it on {metric}, p50, "
                         f"throughput and size at once), but not {_WHY_PRIORITY[req.priority]}"]
    decisions = [{"variant": base.name, "action": "measured in a fresh process", "status": "baseline",
                  "why": numbers(base, metric), "seconds": round(base_s, 1)}]
    for t in tried:
        if t.result is None:
            decisions.append({"variant": t.name, "action": t.action, "status": "skipped", "why": t.skipped,
                              "seconds": round(t.seconds, 1)})
            continue
        v = t.result
        if v is chosen:
            v.status = "chosen"
            v.reasons = [f"{_WHY_PRIORITY[req.priority]} of the variants meeting every requirement"]
        verdict = {"chosen": "chosen", "kept": "kept", "dominated": "kept out", "rejected": "rejected"}[v.status]
        why = f"{verdict}: {'; '.join(v.reasons)}" if v.reasons else verdict
        decisions.append({"variant": v.name, "action": t.action, "status": v.status,
                          "why": f"{numbers(v, metric)}. {why}", "seconds": round(t.seconds, 1)})
    if chosen is not None:
        rec = _recommend(chosen, base, req, metric, len(accepted))
        return SearchOutcome(results, decisions, chosen.name, rec)
    losers = [v for v in results[1:] if v.reasons]
    near = _closest(losers, base, req, metric)
    if near is None:
        rec = ("No variant could be built and measured within the time budget." if tried
               else "Only the baseline was measured.")
        return SearchOutcome(results, decisions, None, rec)
    rec = f"No variant meets every requirement; the closest is {near.name}, which misses: {'; '.join(near.reasons)}."
    return SearchOutcome(results, decisions, None, rec, near.name, list(near.reasons))
