"""The terminal table: short numeric columns that fit 80 columns, the full names and intervals on their own lines."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infopt.evaluate._report_facts import (
    fmt_quality,
    p50_pair,
    quality,
    quality_text,
    recommendation,
    status,
    verdicts,
    within_noise,
)
from infopt.evaluate._results import RunResult, VariantResult

__all__ = ["print_table", "table_rows"]

_SHORT = {"accuracy": "acc", "macro_f1": "F1", "perplexity": "ppl", "cosine_to_parent": "cos",
          "retrieval_agreement": "agree"}


def _columns(run: RunResult) -> list[str]:
    cols = ["#", _SHORT.get(run.quality_metric, run.quality_metric), "Δ", "p50", "p95", "it/s", "MB", "RSS", "speed"]
    return [*cols, "tok/s", "status"] if run.task == "causal-lm" else [*cols, "status"]


def _delta(run: RunResult, v: VariantResult) -> str:
    if v is run.baseline:
        return ""
    d = quality(v, run.quality_metric) - quality(run.baseline, run.quality_metric)
    return (f"{d:+.2f}" if abs(d) < 10 else f"{d:+.3g}" if abs(d) < 1000 else f"{d:+.0e}") + (
        "*" if within_noise(v) else "")


def _short(x: float, unit: str = "") -> str:
    """A positive number in at most 5 characters (and its unit)."""
    text = f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:.0f}" if x < 1e5 else f"{x:.0e}"
    return text + unit


def _rate(x: float) -> str:
    """Items per second: whole numbers from 100 on."""
    return _short(x) if x < 100 or x >= 1e5 else f"{x:.0f}"


def table_rows(run: RunResult) -> list[list[str]]:
    """The table's cells, one row per variant, as printed."""
    rows = []
    for i, v in enumerate(run.variants):
        mine, theirs, _ = p50_pair(run, v)
        row = [str(i + 1), fmt_quality(quality(v, run.quality_metric), run.quality_metric), _delta(run, v),
               _short(v.speed.p50_ms), _short(v.speed.p95_ms),
               _rate(v.speed.throughput),
               _short(v.size_mb), f"{v.peak_rss_mb:.0f}", _short(theirs / mine, "x") if mine else "n/a"]
        if run.task == "causal-lm":
            tok = v.speed.decode_tokens_per_s
            row.append("n/a" if tok is None else _rate(tok))
        rows.append([*row, status(run, v)])
    return rows


def _legend(run: RunResult) -> list[str]:
    base = run.baseline.speed
    lines = [f"p50 / p95: ms at batch 1, tokenization included; it/s: items/s at batch {base.batch_size}; "
             f"MB: weights on disk; RSS: peak MB; speed: the baseline's p50 / the variant's"
             + (" (interleaved rounds where measured)" if base.interleaved_p50_ms else "")
             + "; Δ: vs the baseline, * = within noise.", ""]
    for i, v in enumerate(run.variants):
        lines.append(f"{i + 1}  {v.name}: {quality_text(run, v)}"
                     + (f"; {v.flips:,} flips" if v.flips is not None else ""))
        lines += [f"     {status(run, v)}: {r}" for r in v.reasons]
    return lines


def print_table(run: RunResult, console: Console | None = None) -> None:
    """Print the table, then one unwrapped line per variant (full name, interval, n) and what got worse."""
    console = console or Console()
    console.print(Text(f"infopt: {run.model} ({run.task}, {run.data})", style="bold"), soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), show_edge=False)
    for c in _columns(run):
        table.add_column(c, justify="left" if c == "status" else "right", no_wrap=True)
    for r in table_rows(run):
        table.add_row(*r)
    console.print(table)
    for line in _legend(run):
        console.print(Text(line), soft_wrap=True, highlight=False)
    console.print(Text(f"Recommendation: {recommendation(run)}", style="bold"), soft_wrap=True)
    for n in verdicts(run):
        console.print(Text(f"- {n}", style="yellow"), soft_wrap=True)
