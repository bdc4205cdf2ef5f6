"""What the user asks of the optimised model: bounds it must meet and the one thing to make as good as possible.

    Requirements()                                    # latency first, at most 1 point accuracy drop, 20 minutes
    Requirements(priority="size", max_accuracy_drop="1%", max_p95_ms=10, time_budget_s=900)
    Requirements.from_toml("needs.toml", max_size_mb=30)    # keys are the field names; keywords override the file

`misses(variant, baseline)` lists every bound a measured variant misses, in words with its numbers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infopt._config import check_choice, check_int, check_number, field_error, read_toml
from infopt.errors import UserError
from infopt.evaluate import VariantResult

__all__ = ["LOWER_IS_BETTER", "PRIORITIES", "Requirements", "parse_duration"]

PRIORITIES = ("latency", "throughput", "size", "accuracy", "cost")
LOWER_IS_BETTER = frozenset({"perplexity"})
"""Quality metrics where a smaller number is better."""


def parse_duration(text: str | float | int) -> float:
    """`20m`, `900s`, `1h`, `1h30m` or a plain number of seconds -> seconds; UserError otherwise."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms]?)", s)
        if not s or not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms]?)", "", s).strip():
            raise UserError(f"The time budget {text!r} is not a duration.", "write it like 20m, 900s or 1h30m.")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1, "": 1}[u] for n, u in parts)
    if not seconds > 0:
        raise UserError(f"The time budget {text!r} is not positive.", "give a duration like 20m or 900s.")
    return seconds


@dataclass(frozen=True)
class Requirements:
    """Bounds every accepted variant meets, the priority that ranks the accepted ones, and the search's budget."""

    priority: str = "latency"
    """What the chosen variant is best at among those meeting every bound: latency (batch-1 p50), throughput
    (items/s at the bench batch size), size (MB on disk), accuracy, or cost (per 1,000 requests)."""
    max_accuracy_drop: float | str = 1.0
    """Largest quality loss against the baseline: points (1.0: one accuracy point), or relative as "1%"."""
    max_p95_ms: float | None = None
    """Largest p95 latency in ms at `p95_batch_size` (None: no bound)."""
    p95_batch_size: int = 1
    """Batch size at which `max_p95_ms` is measured."""
    min_throughput: float | None = None
    """Fewest items per second at the bench batch size (None: no bound)."""
    max_size_mb: float | None = None
    """Largest size of the weights on disk in MB (None: no bound)."""
    max_memory_mb: float | None = None
    """Largest peak resident memory in MB of the process that loads and runs the variant (None: no bound)."""
    time_budget_s: float = 1200.0
    """Wall-clock seconds the search may spend building and measuring variants."""
    price_per_hour: float | None = None
    """Price of this machine per hour (any currency), for the cost per 1,000 requests (None: not known)."""

    def __post_init__(self) -> None:
        check_choice(self, "priority", PRIORITIES)
        drop = self.max_accuracy_drop
        if isinstance(drop, str):
            text = drop.strip()
            try:
                number = float(text.rstrip("%").strip())
            except ValueError:
                allowed = 'points (e.g. 1.0) or relative (e.g. "1%")'
                raise field_error(self, "max_accuracy_drop", drop, allowed) from None
            drop = text if text.endswith("%") else number
            if not (number >= 0 and number < float("inf")):
                raise field_error(self, "max_accuracy_drop", self.max_accuracy_drop, "a number >= 0")
            object.__setattr__(self, "max_accuracy_drop", drop)
        if not isinstance(drop, str):
            check_number(self, "max_accuracy_drop", low=0, example=1.0)
            object.__setattr__(self, "max_accuracy_drop", float(drop))
        for name in ("max_p95_ms", "min_throughput", "max_size_mb", "max_memory_mb", "price_per_hour"):
            check_number(self, name, low=0, bounds="(]" if name != "price_per_hour" else "[]", optional=True)
        check_int(self, "p95_batch_size", min=1)
        check_number(self, "time_budget_s", low=0, bounds="(]", example=1200)

    # --- reading them ---------------------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "requirements") -> Requirements:
        """From a table whose keys are the field names (`time_budget_s` may also be `time_budget = "20m"`)."""
        data = dict(data)
        if "time_budget" in data:
            if "time_budget_s" in data:
                raise UserError(f"{where} gives both time_budget and time_budget_s.", "keep one of them.")
            data["time_budget_s"] = parse_duration(data.pop("time_budget"))
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise UserError(f"{where}: unknown key {key!r}.", f"use one of {', '.join(sorted(known))}.")
        try:
            return cls(**data)
        except UserError as e:
            raise UserError(f"{where}: {e.problem}", e.fix) from None

    @classmethod
    def from_toml(cls, path: str | Path | None, **overrides: Any) -> Requirements:
        """The TOML file at `path` (None: the defaults), with the `overrides` that are not None replacing it."""
        data: dict[str, Any] = {}
        if path is not None:
            path = Path(path)
            data = read_toml(path, "the requirements file", "pass an existing TOML file to --requirements.")
        given = {k: v for k, v in overrides.items() if v is not None}
        if "time_budget_s" in given:
            data.pop("time_budget", None)
        return cls.from_mapping({**data, **given}, str(path) if path is not None else "requirements")

    def to_dict(self) -> dict[str, Any]:
        """As stored in the report."""
        return dataclasses.asdict(self)

    # --- judging a variant ----------------------------------------------------------------------------------------

    def allowed_drop(self, baseline_quality: float) -> float:
        """The largest allowed quality loss in the metric's own units for a baseline of `baseline_quality`."""
        if isinstance(self.max_accuracy_drop, str):
            return abs(baseline_quality) * float(self.max_accuracy_drop.rstrip("%")) / 100
        return float(self.max_accuracy_drop)

    def floor(self, metric: str, baseline_quality: float) -> float:
        """The worst acceptable value of `metric` (a ceiling for metrics where lower is better)."""
        scale = 0.01 if metric == "cosine_to_parent" and not isinstance(self.max_accuracy_drop, str) else 1.0
        allowed = self.allowed_drop(baseline_quality) * scale
        return baseline_quality + allowed if metric in LOWER_IS_BETTER else baseline_quality - allowed

    def quality_miss(self, variant: VariantResult, baseline: VariantResult, metric: str) -> str | None:
        """The quality bound in words if `variant` misses it (decided on the point estimate), else None."""
        if metric not in variant.quality or metric not in baseline.quality:
            return None
        q, b = variant.quality[metric], baseline.quality[metric]
        limit = self.floor(metric, b)
        worse = q > limit if metric in LOWER_IS_BETTER else q < limit
        if not worse and q == q:  # NaN quality is a miss
            return None
        ci = ""
        if variant.delta_ci:
            lo, hi = variant.delta_ci
            ci = f", 95% interval of the change [{lo:+.2f}, {hi:+.2f}]"
        n = f" on {variant.n_eval} examples" if variant.n_eval else ""
        bound = (f"{self.max_accuracy_drop} of {b:.4g}" if isinstance(self.max_accuracy_drop, str)
                 else f"{self.max_accuracy_drop:g} points")
        return (f"{metric} {q:.4g} vs baseline {b:.4g} ({q - b:+.2f}{ci}{n}): more than the allowed {bound} "
                f"(limit {limit:.4g})")

    def misses(self, variant: VariantResult, baseline: VariantResult, metric: str = "accuracy",
               p95_at_batch_ms: float | None = None) -> list[str]:
        """Every bound `variant` misses, in words with its numbers ([] when it meets all of them).

        `p95_at_batch_ms` is the variant's p95 at `p95_batch_size` when that is not 1 (batch 1 comes from its
        speed profile); without it a batch-N bound is reported as not measured."""
        out = []
        if (q := self.quality_miss(variant, baseline, metric)) is not None:
            out.append(q)
        if self.max_p95_ms is not None:
            p95 = variant.speed.p95_ms if self.p95_batch_size == 1 else p95_at_batch_ms
            if p95 is None:
                out.append(f"p95 at batch {self.p95_batch_size} was not measured (bound {self.max_p95_ms:g} ms)")
            elif p95 > self.max_p95_ms:
                out.append(f"p95 {p95:.2f} ms at batch {self.p95_batch_size} is over the bound {self.max_p95_ms:g} ms")
        if self.min_throughput is not None and variant.speed.throughput < self.min_throughput:
            out.append(f"throughput {variant.speed.throughput:.1f} items/s at batch {variant.speed.batch_size} is "
                       f"under the bound {self.min_throughput:g}")
        if self.max_size_mb is not None and variant.size_mb > self.max_size_mb:
            out.append(f"size {variant.size_mb:.1f} MB is over the bound {self.max_size_mb:g} MB")
        if self.max_memory_mb is not None and variant.peak_rss_mb > self.max_memory_mb:
            out.append(f"peak memory {variant.peak_rss_mb:.0f} MB is over the bound {self.max_memory_mb:g} MB")
        return out

    def shortfall(self, variant: VariantResult, baseline: VariantResult, metric: str = "accuracy",
                  p95_at_batch_ms: float | None = None) -> float:
        """How far `variant` is from meeting every bound: the sum of each miss relative to its bound (0: none)."""
        out = 0.0
        if metric in variant.quality and metric in baseline.quality:
            q, b = variant.quality[metric], baseline.quality[metric]
            loss = (q - b) if metric in LOWER_IS_BETTER else (b - q)
            allowed = max(self.allowed_drop(b), 1e-9)
            out += max(0.0, loss - allowed) / max(allowed, 1.0) if loss == loss else 1e9
        p95 = variant.speed.p95_ms if self.p95_batch_size == 1 else p95_at_batch_ms
        for value, bound, upper in ((p95, self.max_p95_ms, True), (variant.size_mb, self.max_size_mb, True),
                                    (variant.peak_rss_mb, self.max_memory_mb, True),
                                    (variant.speed.throughput, self.min_throughput, False)):
            if bound is None or value is None or value != value:
                continue
            out += max(0.0, value / bound - 1) if upper else max(0.0, bound / max(value, 1e-9) - 1)
        return out

    def only_quality_missed(self, variant: VariantResult, baseline: VariantResult, metric: str = "accuracy",
                            p95_at_batch_ms: float | None = None) -> bool:
        """True when the quality bound is the one bound `variant` misses (a recovery may fix it)."""
        missed = self.misses(variant, baseline, metric, p95_at_batch_ms)
        return len(missed) == 1 and self.quality_miss(variant, baseline, metric) is not None
