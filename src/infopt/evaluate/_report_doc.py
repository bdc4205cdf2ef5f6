"""The report's content as a list of blocks, so that report.md and report.html say the same things."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infopt.evaluate._report_facts import (
    break_even,
    cost_per_1k,
    delta_text,
    example_step,
    fmt_ms,
    fmt_quality,
    one_example,
    p50_pair,
    quality,
    quality_text,
    recommendation,
    retention,
    status,
    verdicts,
)
from infopt.evaluate._results import RunResult, VariantResult

__all__ = ["Block", "Bullets", "Heading", "Lead", "Para", "Plots", "TableBlock", "build_doc"]


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Lead:
    """A labelled first sentence (the recommendation)."""

    label: str
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class TableBlock:
    header: list[str]
    rows: list[list[str]]
    marks: list[str] = field(default_factory=list)
    """Per row: the variant's status (for styling), or ""."""


@dataclass(frozen=True)
class Plots:
    """Where report.html puts its plots (report.md points to them)."""

    metric: str


Block = Heading | Lead | Para | Bullets | TableBlock | Plots


def _done(v: VariantResult) -> str:
    """The steps of a variant: its method, or for a chain whose method names only its last step, the recipe's parts."""
    return " -> ".join(v.recipe.split("+")) if "+" in v.recipe and "->" not in v.method else v.method


def _describe(value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        if value and all(isinstance(x, bool) for x in value.values()):
            has = [k for k, x in value.items() if x]
            lacks = [k for k, x in value.items() if not x]
            if not has:
                return f"none of {', '.join(lacks)}"
            return ", ".join(has) + (f" (not: {', '.join(lacks)})" if lacks else "")
        return ", ".join(f"{k} {_describe(x)}" for k, x in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_describe(x) for x in value) or "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _machine(run: RunResult) -> list[Block]:
    env = run.environment
    if run.machine:
        items = [f"{k}: {_describe(v)}" for k, v in run.machine.items()]
    else:
        items = [f"cpu: {env.get('cpu', 'not recorded')}, {env.get('cpu_count', '?')} logical cores "
                 "(flags were not measured by this run)"]
    blocks: list[Block] = [Heading("Machine and requirements"), Bullets(items)]
    if run.requirements:
        blocks.append(Bullets([f"requirement {k}: {_describe(v)}" for k, v in run.requirements.items()]))
    else:
        blocks.append(Para("Requirements: none recorded (the given recipes were measured side by side)."))
    return blocks


def _x(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _reduction(size: float, base: float) -> str:
    if not (size and base):
        return "n/a"
    if size <= base:
        return f"{100 * (1 - size / base):.0f}% ({base / size:.2f}x smaller)"
    return f"{100 * (size / base - 1):.0f}% larger ({size / base:.2f}x)"


def _comparison(run: RunResult) -> list[Block]:
    base, metric = run.baseline, run.quality_metric
    rows, marks = [], []
    chosen = [v for v in run.variants[1:] if v.name == run.chosen]
    for label, v in [*[(v.recipe or v.name, v) for v in run.variants[1:]], *[(f"chosen: {v.name}", v) for v in chosen]]:
        mine, theirs, _ = p50_pair(run, v)
        reduction = _reduction(v.size_mb, base.size_mb)
        rows.append([label, _done(v), reduction, _x(theirs, mine), _x(v.speed.throughput, base.speed.throughput),
                     f"{retention(run, v):.1f}%", status(run, v)])
        marks.append(status(run, v))
    if not rows:
        return []
    header = ["technique", "what was done", "size reduction", "speed-up (batch 1)",
              f"throughput (batch {base.speed.batch_size})", f"{metric} retention", "status"]
    return [Heading("Performance comparison"),
            Para(f"Against the baseline ({base.name}): weights on disk, batch-1 p50 latency, items/s, and "
                 f"{metric} as a share of the baseline's."),
            TableBlock(header, rows, marks)]


def _row(run: RunResult, i: int, v: VariantResult) -> list[str]:
    metric = run.quality_metric
    ci = v.quality_ci.get(metric)
    q = fmt_quality(quality(v, metric), metric)
    q += f" [{fmt_quality(ci[0], metric)}, {fmt_quality(ci[1], metric)}]" if ci else ""
    cost = cost_per_1k(run, v)
    row = [str(i + 1), v.name, status(run, v), q, f"{v.n_eval:,}" if v.n_eval else "n/a",
           "baseline" if v is run.baseline else delta_text(run, v),
           "n/a" if v.flips is None else f"{v.flips:,}", fmt_ms(v.speed.p50_ms),
           fmt_ms(v.speed.interleaved_p50_ms) if v.speed.interleaved_p50_ms else "n/a", fmt_ms(v.speed.p95_ms),
           f"{v.speed.throughput:.1f}", f"{v.size_mb:.1f}", f"{v.peak_rss_mb:.0f}",
           "n/a" if cost is None else f"{cost:.3g}"]
    if run.task == "causal-lm":
        tok = v.speed.decode_tokens_per_s
        row.append("n/a" if tok is None else f"{tok:.1f}")
    return row


def _variants(run: RunResult) -> list[Block]:
    metric, base = run.quality_metric, run.baseline
    header = ["#", "variant", "status", f"{metric} [95% CI]", "n", "vs baseline [95% CI]", "flips",
              "p50 ms", "interleaved p50 ms", "p95 ms", f"items/s (batch {base.speed.batch_size})", "size MB",
              "peak RSS MB", "cost / 1k requests"]
    if run.task == "causal-lm":
        header.append("decode tok/s")
    rows = [_row(run, i, v) for i, v in enumerate(run.variants)]
    notes = []
    for n in sorted({v.n_eval for v in run.variants if one_example(run, v) is not None}):
        notes.append(f"{metric} was scored on n={n:,} test examples: one example = {example_step(100 / n)} points.")
    notes.append("A difference whose paired 95% interval contains 0 is within noise; flips count the test examples "
                 "whose prediction differs from the baseline's.")
    if run.price_per_hour is not None:
        notes.append(f"Cost of 1,000 requests at the batch-1 p50, at {run.price_per_hour:g} per hour.")
    else:
        notes.append("Cost: no price per hour was configured.")
    notes.append(break_even(run))
    return [Heading("Every variant"), TableBlock(header, rows, [status(run, v) for v in run.variants]),
            *[Para(n) for n in notes]]


def _decision_log(run: RunResult) -> list[Block]:
    names = {v.name for v in run.variants}
    items = []
    for i, v in enumerate(run.variants):
        mine, theirs, _ = p50_pair(run, v)
        what = v.method + (f" (recipe {v.recipe})" if v.recipe else "")
        numbers = (f"{quality_text(run, v)}; p50 {v.speed.p50_ms:.2f} ms ({_x(theirs, mine)} the baseline's speed), "
                   f"p95 {v.speed.p95_ms:.2f} ms, {v.speed.throughput:.1f} items/s, {v.size_mb:.1f} MB, "
                   f"peak RSS {v.peak_rss_mb:.0f} MB")
        why = "; ".join(v.reasons) if v.reasons else (
            "the reference every variant is measured against" if v is run.baseline else "no reason recorded")
        log = [f"{d.get('action', '?')}: {d.get('why', '')}".rstrip(": ") for d in run.decisions
               if d.get("variant") == v.name]
        items.append(f"#{i + 1} {v.name}: {status(run, v)}. Done: {what}. Numbers: {numbers}. Why: {why}."
                     + (f" Log: {'; '.join(log)}." if log else ""))
    other = [f"{d.get('variant') or 'run'}: {d.get('action', '?')}" + (f" ({d['why']})" if d.get("why") else "")
             for d in run.decisions if d.get("variant") not in names]
    blocks: list[Block] = [Heading("Decision log"), Bullets(items)]
    if other:
        blocks += [Para("Other decisions, in order:"), Bullets(other)]
    return blocks


def _environment(run: RunResult) -> list[Block]:
    env = run.environment
    items = [f"{k}: {_describe(v)}" for k, v in env.items() if k != "versions"]
    versions = env.get("versions", {})
    items += [f"{k} {v}" for k, v in versions.items()] if isinstance(versions, dict) else []
    return [Heading("Where this ran"), Bullets(items)]


def build_doc(run: RunResult) -> list[Block]:
    """Every block of the report, in order."""
    worse = verdicts(run)
    return [
        Heading(f"infopt report: {run.model}", 1),
        Lead("Recommendation", recommendation(run)),
        Para(f"Task: {run.task}. Data: {run.data}. Quality metric: {run.quality_metric} (on the test split). "
             "Latency is end to end (tokenization included), after warm-up; each variant was loaded from disk and "
             "measured in a fresh process; interleaved p50s come from rounds of every kept variant in one process."),
        *_machine(run),
        *_comparison(run),
        *_variants(run),
        Heading("Plots"),
        Plots(run.quality_metric),
        *_decision_log(run),
        Heading("What got worse"),
        Bullets(worse) if worse else Para("Nothing: no variant is worse than the baseline on any measured number."),
        *_environment(run),
        Heading("Variants"),
        Bullets([f"{v.name}: {v.method}, {v.params:,} params, fingerprint {v.fingerprint}, folder {v.path}"
                 for v in run.variants]),
    ]
