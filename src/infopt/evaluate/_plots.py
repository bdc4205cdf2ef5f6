"""The report's plots as inline SVG (matplotlib, Agg canvas, text kept as escaped SVG text, no external files)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

from infopt.evaluate._report_facts import (
    interleaved_everywhere,
    lower_is_better,
    pareto_front,
    plot_p50,
    quality,
    status,
)
from infopt.evaluate._results import RunResult

__all__ = ["STATUS_COLORS", "latency_svg", "pareto_svg", "size_svg"]

STATUS_COLORS = {
    "baseline": "#333333", "chosen": "#1a9850", "kept": "#2c7bb6", "measured": "#2c7bb6",
    "dominated": "#8c96c6", "rejected": "#d7301f", "skipped": "#bbbbbb",
}


def _color(run: RunResult, i: int) -> str:
    return STATUS_COLORS.get(status(run, run.variants[i]), "#2c7bb6")


def _label(run: RunResult, i: int) -> str:
    return f"{i + 1}  {run.variants[i].name}"


def _svg(draw: Callable[[Any], None], height: float, salt: str) -> str:
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rc: dict[Any, Any] = {"svg.fonttype": "none", "svg.hashsalt": salt, "text.parse_math": False, "font.size": 9}
    with mpl.rc_context(rc):
        fig = Figure(figsize=(8.5, height), layout="constrained")
        FigureCanvasAgg(fig)
        draw(fig)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata=dict.fromkeys(("Date", "Creator", "Format", "Type")))
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _log_if_wide(ax: Any, values: list[float], axis: str) -> None:
    """A log axis when the values span more than 20x, labelled in plain numbers (math text is off)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    finite = [v for v in values if v > 0 and math.isfinite(v)]
    if finite and max(finite) / min(finite) > 20:
        target = ax.xaxis if axis == "x" else ax.yaxis
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        target.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        target.set_minor_formatter(NullFormatter())


def pareto_svg(run: RunResult) -> str:
    """Quality against batch-1 p50 of every measured variant (95% intervals as bars), the Pareto front as a line."""
    metric = run.quality_metric
    shown = [i for i, v in enumerate(run.variants)
             if status(run, v) != "skipped" and math.isfinite(quality(v, metric))]
    front = pareto_front(run)

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        for i in shown:
            v = run.variants[i]
            q, ci = quality(v, metric), v.quality_ci.get(metric)
            yerr = [[q - ci[0]], [ci[1] - q]] if ci else None
            hollow = status(run, v) in ("rejected", "dominated")
            ax.errorbar([plot_p50(run, v)], [q], yerr=yerr, fmt="o", ms=8 if status(run, v) == "chosen" else 6,
                        color=_color(run, i), mfc="white" if hollow else _color(run, i), capsize=3,
                        label=_label(run, i) + ("" if status(run, v) in v.name else f" ({status(run, v)})"))
            ax.annotate(str(i + 1), (plot_p50(run, v), q), xytext=(5, 4), textcoords="offset points", fontsize=8)
        if front:
            xs, ys = [plot_p50(run, v) for v in front], [quality(v, metric) for v in front]
            ax.step(xs, ys, where="post", color="#1a9850", ls="--", lw=1.2, marker="o", ms=14, mfc="none",
                    label="Pareto front")
        _log_if_wide(ax, [plot_p50(run, run.variants[i]) for i in shown], "x")
        how = "interleaved rounds" if interleaved_everywhere(run) else "each variant alone"
        ax.set_xlabel(f"p50 latency at batch 1, ms, {how} (lower is better)")
        better = "lower" if lower_is_better(metric) else "higher"
        ax.set_ylabel(f"{metric} ({better} is better)")
        ax.grid(alpha=0.3)
        ax.set_title(f"{metric} vs latency")
        fig.legend(loc="outside lower center", ncols=1, fontsize=8, frameon=False)

    return _svg(draw, 4.0 + 0.2 * (len(shown) + 1), "pareto")


def size_svg(run: RunResult) -> str:
    """Size of each variant's weights on disk, as horizontal bars."""
    n = len(run.variants)

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ys = list(range(n))[::-1]
        sizes = [v.size_mb for v in run.variants]
        bars = ax.barh(ys, sizes, color=[_color(run, i) for i in range(n)])
        ax.bar_label(bars, labels=[f"{s:.1f} MB" for s in sizes], padding=3, fontsize=8)
        ax.set_yticks(ys, [_label(run, i) for i in range(n)])
        ax.set_xlabel("weights on disk, MB")
        ax.set_xlim(0, max([*sizes, 1e-9]) * 1.2)
        ax.set_title("size")
        ax.grid(axis="x", alpha=0.3)

    return _svg(draw, 1.2 + 0.35 * n, "size")


def latency_svg(run: RunResult) -> str | None:
    """Box plots of the batch-1 latency samples (None: no variant recorded its samples)."""
    shown = [i for i, v in enumerate(run.variants) if v.speed.samples_ms]
    if not shown:
        return None

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ys = list(range(len(shown)))[::-1]
        data = [run.variants[i].speed.samples_ms for i in shown]
        box = ax.boxplot(data, positions=ys, orientation="horizontal", widths=0.6, patch_artist=True,
                         showfliers=True, flierprops={"markersize": 3, "alpha": 0.5},
                         medianprops={"color": "#111111", "linewidth": 1.5})
        for patch, i in zip(box["boxes"], shown, strict=True):
            patch.set_facecolor(_color(run, i))
            patch.set_alpha(0.6)
        ax.set_yticks(ys, [f"{_label(run, i)} (n={len(run.variants[i].speed.samples_ms)})" for i in shown])
        _log_if_wide(ax, [x for d in data for x in d], "x")
        ax.set_xlabel("latency at batch 1, ms (box: quartiles, line: median, whiskers: 1.5 IQR)")
        ax.set_title("latency distributions")
        ax.grid(axis="x", alpha=0.3)

    return _svg(draw, 1.2 + 0.4 * len(shown), "latency")
