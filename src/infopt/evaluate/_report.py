"""The report: a table in the terminal, and a folder with results.json and report.md."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from infopt.evaluate._results import RunResult, VariantResult

__all__ = ["environment", "print_table", "render_markdown", "verdicts", "write_report"]

_LOWER_IS_BETTER = {"perplexity"}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(seed: int) -> dict[str, object]:
    """Versions, seed, CPU and threads: what a reader needs to reproduce the numbers."""
    versions = {}
    for pkg in ("infopt", "torch", "transformers", "onnxruntime", "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "python": sys.version.split()[0],
        "versions": versions,
        "seed": seed,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def _quality(v: VariantResult, metric: str) -> float:
    return v.quality.get(metric, float("nan"))


def _versus(v: VariantResult, base: VariantResult, metric: str) -> str:
    if v is base:
        return "baseline"
    speed = base.speed.p50_ms / v.speed.p50_ms
    size = v.size_mb / base.size_mb if base.size_mb else float("nan")
    delta = _quality(v, metric) - _quality(base, metric)
    unit = "" if metric in _LOWER_IS_BETTER or metric == "cosine_to_parent" else " pts"
    return f"{speed:.2f}x speed, {size:.2f}x size, {delta:+.3g}{unit} {metric}"


def _columns(run: RunResult) -> list[str]:
    cols = [
        "variant",
        run.quality_metric,
        "p50 ms (batch 1)",
        "p95 ms",
        f"throughput (batch {run.baseline.speed.batch_size}, items/s)",
        "size MB",
        "peak RSS MB",
    ]
    if run.task == "causal-lm":
        cols.append("decode tok/s")
    return [*cols, "vs baseline"]


def _rows(run: RunResult) -> list[list[str]]:
    rows = []
    for v in run.variants:
        row = [
            v.name,
            f"{_quality(v, run.quality_metric):.4g}",
            f"{v.speed.p50_ms:.2f}",
            f"{v.speed.p95_ms:.2f}",
            f"{v.speed.throughput:.1f}",
            f"{v.size_mb:.1f}",
            f"{v.peak_rss_mb:.0f}",
        ]
        if run.task == "causal-lm":
            row.append(f"{v.speed.decode_tokens_per_s or float('nan'):.1f}")
        rows.append([*row, _versus(v, run.baseline, run.quality_metric)])
    return rows


def verdicts(run: RunResult) -> list[str]:
    """Plain sentences for every variant that is slower, bigger or worse than the baseline."""
    base, metric, out = run.baseline, run.quality_metric, []
    for v in run.variants[1:]:
        if v.speed.p50_ms > base.speed.p50_ms:
            out.append(
                f"{v.name} is slower than the baseline on this machine "
                f"({v.speed.p50_ms:.2f} ms vs {base.speed.p50_ms:.2f} ms at batch 1)."
            )
        if v.speed.throughput < base.speed.throughput:
            out.append(
                f"{v.name} has lower batch throughput than the baseline "
                f"({v.speed.throughput:.1f} vs {base.speed.throughput:.1f} items/s)."
            )
        if base.size_mb and round(v.size_mb, 1) > round(base.size_mb, 1):
            out.append(f"{v.name} is larger on disk than the baseline ({v.size_mb:.1f} vs {base.size_mb:.1f} MB).")
        q, b = _quality(v, metric), _quality(base, metric)
        worse = q > b if metric in _LOWER_IS_BETTER else q < b
        if worse:
            out.append(f"{v.name} loses quality: {metric} {q:.4g} vs {b:.4g}.")
        out += [f"{v.name}: {n}" for n in v.notes]
    return out


def render_markdown(run: RunResult) -> str:
    cols, rows = _columns(run), _rows(run)
    lines = [
        f"# infopt report: {run.model}",
        "",
        f"Task: {run.task}. Data: {run.data}. "
        f"Quality metric: {run.quality_metric} (on the test split). Latency is end to end "
        "(tokenization included), after warm-up; each variant was loaded from disk and measured in a fresh process.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = verdicts(run)
    if notes:
        lines += ["", "## What got worse", "", *[f"- {n}" for n in notes]]
    env = run.environment
    lines += ["", "## Where this ran", ""]
    lines += [f"- {k}: {v}" for k, v in env.items() if k != "versions"]
    lines += [f"- {k} {v}" for k, v in dict(env.get("versions", {})).items()]  # type: ignore[call-overload]
    lines += ["", "## Variants", ""]
    lines += [
        f"- {v.name}: {v.method}, {v.params:,} params, fingerprint {v.fingerprint}, folder `{v.path}`"
        for v in run.variants
    ]
    return "\n".join(lines) + "\n"


def print_table(run: RunResult, console: Console | None = None) -> None:
    table = Table(title=f"infopt: {run.model} ({run.task}, {run.data})")
    for c in _columns(run):
        table.add_column(c, justify="left" if c in ("variant", "vs baseline") else "right")
    for r in _rows(run):
        table.add_row(*r)
    console = console or Console()
    console.print(table)
    for n in verdicts(run):
        console.print(f"[yellow]- {n}[/yellow]")


def write_report(run: RunResult, folder: Path) -> None:
    """Write results.json and report.md into `folder` (callers write the whole run folder atomically)."""
    run.save(folder / "results.json")
    (folder / "report.md").write_text(render_markdown(run))
