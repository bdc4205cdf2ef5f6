"""The numbers and sentences every report view shares: intervals, noise, speed-ups, regressions, cost, Pareto front."""

from __future__ import annotations

import math

from infopt.evaluate._results import RunResult, VariantResult

__all__ = [
    "break_even",
    "cost_per_1k",
    "delta_text",
    "example_step",
    "fmt_ms",
    "fmt_quality",
    "interleaved_everywhere",
    "lower_is_better",
    "one_example",
    "p50_pair",
    "pareto_front",
    "plot_p50",
    "quality",
    "quality_text",
    "recommendation",
    "retention",
    "status",
    "verdicts",
    "within_noise",
]

_LOWER_IS_BETTER = {"perplexity"}
_PERCENT = {"accuracy", "macro_f1", "retrieval_agreement"}
_NOT_QUALITY = {"tokens"}


def lower_is_better(metric: str) -> bool:
    return metric in _LOWER_IS_BETTER


def _unit(metric: str) -> str:
    return " points" if metric in _PERCENT else ""


def quality(v: VariantResult, metric: str) -> float:
    return v.quality.get(metric, float("nan"))


def fmt_quality(x: float, metric: str) -> str:
    return f"{x:.2f}" if metric in _PERCENT else f"{x:.4g}"


def fmt_ms(x: float) -> str:
    """Milliseconds in at most 6 characters."""
    return f"{x:.2f}" if x < 100 else f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def status(run: RunResult, v: VariantResult) -> str:
    """The optimizer's verdict, or `baseline` / `measured` for results written before there was one."""
    return v.status or ("baseline" if v is run.baseline else "measured")


def one_example(run: RunResult, v: VariantResult) -> float | None:
    """How much one test example moves a percent metric (None: not a percent metric, or n unknown)."""
    return 100 / v.n_eval if run.quality_metric in _PERCENT and v.n_eval > 0 else None


def example_step(step: float) -> str:
    return f"{step:.2f}" if step >= 0.05 else f"{step:.2g}"


def quality_text(run: RunResult, v: VariantResult) -> str:
    """E.g. "accuracy 84.92 [83.05, 86.80], n=1,280; one example = 0.08 points"."""
    metric = run.quality_metric
    text = f"{metric} {fmt_quality(quality(v, metric), metric)}"
    ci = v.quality_ci.get(metric)
    if ci:
        text += f" [{fmt_quality(ci[0], metric)}, {fmt_quality(ci[1], metric)}]"
    if v.n_eval:
        text += f", n={v.n_eval:,}" + (" tokens" if run.task == "causal-lm" else "")
    step = one_example(run, v)
    if step is not None:
        text += f"; one example = {example_step(step)} points"
    return text


def within_noise(v: VariantResult) -> bool:
    """True when the paired interval of the difference to the baseline contains 0."""
    return v.delta_ci is not None and v.delta_ci[0] <= 0 <= v.delta_ci[1]


def delta_text(run: RunResult, v: VariantResult) -> str:
    """The difference to the baseline, with its paired interval and "within noise" when that contains 0."""
    metric = run.quality_metric
    d = quality(v, metric) - quality(run.baseline, metric)
    text = f"{d:+.2f}{_unit(metric)}" if metric in _PERCENT else f"{d:+.4g}"
    if v.delta_ci is not None:
        lo, hi = v.delta_ci
        text += f" [{lo:+.2f}, {hi:+.2f}]" if metric in _PERCENT else f" [{lo:+.4g}, {hi:+.4g}]"
        if within_noise(v):
            text += ", within noise"
    return text


def p50_pair(run: RunResult, v: VariantResult) -> tuple[float, float, bool]:
    """(variant p50, baseline p50, interleaved): the interleaved p50s when both have one, else the isolated ones."""
    base = run.baseline.speed
    if v.speed.interleaved_p50_ms and base.interleaved_p50_ms:
        return v.speed.interleaved_p50_ms, base.interleaved_p50_ms, True
    return v.speed.p50_ms, base.p50_ms, False


def interleaved_everywhere(run: RunResult) -> bool:
    """True when every measured variant has an interleaved p50 (then plots and the front use those)."""
    measured = [v for v in run.variants if status(run, v) != "skipped"]
    return bool(measured) and all(v.speed.interleaved_p50_ms for v in measured)


def plot_p50(run: RunResult, v: VariantResult) -> float:
    """The p50 that plots and the Pareto front use: interleaved when every variant has one, else isolated."""
    return (v.speed.interleaved_p50_ms or v.speed.p50_ms) if interleaved_everywhere(run) else v.speed.p50_ms


def retention(run: RunResult, v: VariantResult) -> float:
    """Quality kept, in percent of the baseline's (inverted for lower-is-better metrics)."""
    q, b = quality(v, run.quality_metric), quality(run.baseline, run.quality_metric)
    if lower_is_better(run.quality_metric):
        return 100 * b / q if q else float("nan")
    return 100 * q / b if b else float("nan")


def cost_per_1k(run: RunResult, v: VariantResult) -> float | None:
    """The recorded cost of 1,000 requests, else the same from the price per hour and the batch-1 p50."""
    if v.cost_per_1k is not None:
        return v.cost_per_1k
    if run.price_per_hour is None:
        return None
    return run.price_per_hour * v.speed.p50_ms / 3600


def _chosen(run: RunResult) -> VariantResult | None:
    return next((v for v in run.variants if v.name == run.chosen), None) if run.chosen else None


def recommendation(run: RunResult) -> str:
    """The optimizer's sentence, or one that says why there is none."""
    if run.recommendation:
        return run.recommendation
    if len(run.variants) == 1:
        return f"No recommendation: only the baseline {run.baseline.name} was measured."
    return (f"No recommendation: this run measured {len(run.variants) - 1} variant(s) side by side without "
            "requirements; compare them below.")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def break_even(run: RunResult) -> str:
    """When the optimisation's own compute is paid back by the chosen variant's saving per request."""
    chosen = _chosen(run)
    if not run.seconds:
        return "Break-even: the run's own compute time was not recorded."
    spent = f"The optimisation took {_duration(run.seconds)} of this machine"
    if run.price_per_hour is not None:
        spent += f" ({run.price_per_hour * run.seconds / 3600:.3g} at {run.price_per_hour:g} per hour)"
    if chosen is None:
        return f"{spent}; no variant was chosen, so break-even: never."
    mine, base, _ = p50_pair(run, chosen)
    saving_ms = base - mine
    if chosen is run.baseline or saving_ms <= 0:
        return f"{spent}; {chosen.name} saves nothing per request, so break-even: never."
    requests = math.ceil(run.seconds * 1000 / saving_ms)
    text = f"{spent}; {chosen.name} saves {saving_ms:.2f} ms per request at batch 1"
    if run.price_per_hour is not None:
        text += f" ({run.price_per_hour * saving_ms / 3600:.3g} per 1,000 requests)"
    return f"{text}, so it pays for itself after {requests:,} requests."


def pareto_front(run: RunResult) -> list[VariantResult]:
    """Measured variants no other beats on both quality and batch-1 p50 (`plot_p50`), fastest first."""
    metric, sign = run.quality_metric, -1.0 if lower_is_better(run.quality_metric) else 1.0
    points = [(v, sign * quality(v, metric), plot_p50(run, v)) for v in run.variants if status(run, v) != "skipped"]
    points = [p for p in points if math.isfinite(p[1]) and math.isfinite(p[2])]
    front = [(v, t) for v, q, t in points
             if not any((q2 >= q and t2 <= t) and (q2 > q or t2 < t) for _, q2, t2 in points)]
    return [v for v, _ in sorted(front, key=lambda p: p[1])]


def _worse(a: float, b: float, lower_better: bool, digits: int) -> bool:
    a, b = round(a, digits), round(b, digits)
    return a > b if lower_better else a < b


def _quality_verdicts(run: RunResult, v: VariantResult) -> list[str]:
    base, metric, out = run.baseline, run.quality_metric, []
    for m, b in base.quality.items():
        q = v.quality.get(m)
        if m in _NOT_QUALITY or q is None or not _worse(q, b, lower_is_better(m), 6):
            continue
        text = f"{v.name} loses quality: {m} {fmt_quality(q, m)} vs {fmt_quality(b, m)}"
        if m == metric and (v.delta_ci is not None or v.flips is not None):
            extra = [delta_text(run, v)] if v.delta_ci is not None else []
            extra += [f"{v.flips:,} predictions flipped"] if v.flips is not None else []
            text += f" ({'; '.join(extra)})"
        out.append(text + ".")
    return out


def verdicts(run: RunResult) -> list[str]:
    """Every measured regression against the baseline, in words: quality, p50, p95, throughput, size, memory."""
    base, out = run.baseline, []
    for v in run.variants[1:]:
        if status(run, v) == "skipped":
            out += [f"{v.name}: {n}" for n in v.notes]
            continue
        mine, theirs, interleaved = p50_pair(run, v)
        if _worse(mine, theirs, True, 2):
            how = "at batch 1, interleaved rounds" if interleaved else "at batch 1"
            out.append(f"{v.name} is slower than the baseline on this machine "
                       f"({mine:.2f} ms vs {theirs:.2f} ms {how}).")
        if _worse(v.speed.p95_ms, base.speed.p95_ms, True, 2):
            out.append(f"{v.name} has a higher p95 latency than the baseline "
                       f"({v.speed.p95_ms:.2f} ms vs {base.speed.p95_ms:.2f} ms at batch 1).")
        if _worse(v.speed.throughput, base.speed.throughput, False, 1):
            out.append(f"{v.name} has lower batch throughput than the baseline "
                       f"({v.speed.throughput:.1f} vs {base.speed.throughput:.1f} items/s).")
        mine_tok, base_tok = v.speed.decode_tokens_per_s, base.speed.decode_tokens_per_s
        if mine_tok is not None and base_tok is not None and _worse(mine_tok, base_tok, False, 1):
            out.append(f"{v.name} decodes slower than the baseline ({mine_tok:.1f} vs {base_tok:.1f} tokens/s).")
        if base.size_mb and _worse(v.size_mb, base.size_mb, True, 1):
            out.append(f"{v.name} is larger on disk than the baseline ({v.size_mb:.1f} vs {base.size_mb:.1f} MB).")
        if base.peak_rss_mb and _worse(v.peak_rss_mb, base.peak_rss_mb, True, 0):
            out.append(f"{v.name} uses more peak memory (RSS) than the baseline "
                       f"({v.peak_rss_mb:.0f} vs {base.peak_rss_mb:.0f} MB).")
        out += _quality_verdicts(run, v)
        if v.batch_flips and v.batch_flips[0]:
            k, n = v.batch_flips
            out.append(f"{v.name} answers {k} of {n} test texts differently when each is sent alone (batch 1) than "
                       "in the scored batches: its answers depend on the other texts of a batch (dynamic int8 "
                       "scales activations per batch).")
        out += [f"{v.name}: {n}" for n in v.notes]
    return out
