"""What a load test measured: per-request samples, percentiles, the server's batch-size histogram (from its
Prometheus /metrics), answers by cache tier, and the `LoadtestResult` that `infopt loadtest` prints and writes as
loadtest.json."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

__all__ = [
    "CACHE_TIERS",
    "BatchHistogram",
    "LoadtestResult",
    "Sample",
    "batch_histogram",
    "cache_summary",
    "parse_histogram",
    "percentile",
    "print_loadtest",
    "summarize",
]


@dataclasses.dataclass(frozen=True)
class Sample:
    """One request: its HTTP status (or `timeout` / `connection` / `bad-response`), latency, time to first
    token (streams), the items it carried (texts sent, or tokens generated) and the cache tier that answered it
    (its `X-Infopt-Cache` header; None: a miss)."""

    status: str
    latency_s: float
    ttft_s: float | None = None
    items: int = 0
    cache: str | None = None

    @property
    def ok(self) -> bool:
        return self.status.isdigit() and 200 <= int(self.status) < 300


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between ranks (numpy's default); None if empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in [0, 100]")
    if not values:
        return None
    xs = sorted(values)
    rank = (len(xs) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return xs[low] + (xs[high] - xs[low]) * (rank - low)


def _ms_summary(seconds: Sequence[float]) -> dict[str, float] | None:
    if not seconds:
        return None
    ms = [s * 1000 for s in seconds]
    out = {f"p{q}": percentile(ms, q) for q in (50, 95, 99)}
    return {**{k: round(v, 3) for k, v in out.items() if v is not None}, "mean": round(sum(ms) / len(ms), 3),
            "max": round(max(ms), 3)}


CACHE_TIERS = ("exact", "prompt", "semantic")
"""The tiers a server's `X-Infopt-Cache` header names, in lookup order."""


def cache_summary(samples: Sequence[Sample]) -> dict[str, Any]:
    """Successful requests by cache tier (and `miss`): their count, share and latency; the hits, the hit rate
    and the model calls (= misses)."""
    good = [s for s in samples if s.ok]
    names = [*CACHE_TIERS, *sorted({s.cache for s in good if s.cache and s.cache not in (*CACHE_TIERS, "miss")})]
    tiers: dict[str, Any] = {}
    for name in (*names, "miss"):
        picked = [s.latency_s for s in good if (s.cache or "miss") == name]
        tiers[name] = {"requests": len(picked), "rate": round(len(picked) / len(good), 4) if good else 0.0,
                       "latency_ms": _ms_summary(picked)}
    misses = tiers["miss"]["requests"]
    return {"tiers": tiers, "hits": len(good) - misses,
            "hit_rate": round((len(good) - misses) / len(good), 4) if good else 0.0, "model_calls": misses}


def parse_histogram(text: str, name: str, labels: Mapping[str, str] | None = None) -> dict[str, float]:
    """Cumulative bucket counts `{le: count}` plus `_count` and `_sum` of the Prometheus histogram `name` in an
    exposition `text`, summed over the series whose labels include `labels` ({} if it has no such series)."""
    want = dict(labels or {})
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for s in family.samples:
            if any(s.labels.get(k) != v for k, v in want.items()):
                continue
            if s.name == name + "_bucket":
                key = s.labels["le"]
            elif s.name in (name + "_count", name + "_sum"):
                key = s.name[len(name):]
            else:
                continue
            out[key] = out.get(key, 0.0) + s.value
    return out


@dataclasses.dataclass(frozen=True)
class BatchHistogram:
    """Model calls by batch size during the test: `buckets` maps each upper bound `le` ("1", "2", ... "+Inf")
    to the calls whose size was above the previous bound and at most this one."""

    buckets: dict[str, int]
    calls: int
    inputs: int

    @property
    def mean(self) -> float | None:
        return self.inputs / self.calls if self.calls else None


def _le(key: str) -> float:
    return math.inf if key == "+Inf" else float(key)


def batch_histogram(before: Mapping[str, float], after: Mapping[str, float]) -> BatchHistogram:
    """What happened between two `parse_histogram` readings, as per-bucket (not cumulative) counts."""
    bounds = sorted((k for k in after if not k.startswith("_")), key=_le)
    buckets: dict[str, int] = {}
    below = 0.0
    for key in bounds:
        cumulative = after[key] - before.get(key, 0.0)
        label = key if key == "+Inf" else f"{_le(key):g}"
        buckets[label] = round(cumulative - below)
        below = cumulative
    calls = round(after.get("_count", 0.0) - before.get("_count", 0.0))
    inputs = round(after.get("_sum", 0.0) - before.get("_sum", 0.0))
    return BatchHistogram(buckets, calls, inputs)


@dataclasses.dataclass(frozen=True)
class LoadtestResult:
    """A finished load test. Latency and time to first token count successful requests only; in an open loop
    they run from each request's scheduled start (so a slow server cannot hide its queue)."""

    config: dict[str, Any]
    mode: str
    sent: int
    ok: int
    errors: dict[str, int]
    elapsed_s: float
    latency_ms: dict[str, float] | None
    ttft_ms: dict[str, float] | None
    requests_per_s: float
    items: int
    item: str
    items_per_s: float
    batch_size: BatchHistogram | None
    notes: tuple[str, ...] = ()
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)
    """`cache_summary` of the samples: requests, share and latency by cache tier; hits; model calls."""
    workload: dict[str, int] = dataclasses.field(default_factory=dict)
    """Texts sent by kind: new, repeat, paraphrase."""

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["notes"] = list(self.notes)
        if self.batch_size is not None:
            data["batch_size"]["mean"] = self.batch_size.mean
        return data


def summarize(samples: Sequence[Sample], elapsed_s: float, *, config: dict[str, Any], mode: str, item: str,
              batch_size: BatchHistogram | None, notes: Sequence[str] = (),
              workload: Mapping[str, int] | None = None) -> LoadtestResult:
    """The result of `samples` taken over `elapsed_s` seconds."""
    good = [s for s in samples if s.ok]
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            errors[s.status] = errors.get(s.status, 0) + 1
    items = sum(s.items for s in good)

    def per_s(n: int) -> float:
        return round(n / elapsed_s, 3) if elapsed_s > 0 else 0.0

    ttfts = [s.ttft_s for s in good if s.ttft_s is not None]
    return LoadtestResult(
        config=config, mode=mode, sent=len(samples), ok=len(good), errors=dict(sorted(errors.items())),
        elapsed_s=round(elapsed_s, 3), latency_ms=_ms_summary([s.latency_s for s in good]),
        ttft_ms=_ms_summary(ttfts), requests_per_s=per_s(len(good)), items=items, item=item,
        items_per_s=per_s(items), batch_size=batch_size, notes=tuple(notes), cache=cache_summary(samples),
        workload=dict(workload or {}))


def _fmt(ms: Mapping[str, float] | None, key: str) -> str:
    return "-" if ms is None or key not in ms else f"{ms[key]:.1f}"


def print_loadtest(result: LoadtestResult, console: Console) -> None:
    """The result as rich tables: requests and latency, then the server's batch sizes."""
    c = result.config
    console.print(f"loadtest of {c['endpoint']} / {c['model']} at {c['url']}, {result.mode} loop")
    table = Table()
    table.add_column("what")
    table.add_column("value", justify="right")
    errors = ", ".join(f"{k}: {v}" for k, v in result.errors.items()) or "none"
    rows = [("requests sent", str(result.sent)), ("ok", str(result.ok)), ("errors", errors),
            ("elapsed s", f"{result.elapsed_s:.2f}"), ("requests / s", f"{result.requests_per_s:.1f}"),
            (f"{result.item} / s", f"{result.items_per_s:.1f}")]
    for key in ("p50", "p95", "p99", "mean"):
        rows.append((f"latency {key} ms", _fmt(result.latency_ms, key)))
    if result.ttft_ms is not None:
        for key in ("p50", "p95", "p99", "mean"):
            rows.append((f"time to first token {key} ms", _fmt(result.ttft_ms, key)))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    h = result.batch_size
    if h is None:
        console.print("server batch sizes: not read (see notes)")
    else:
        mean = "-" if h.mean is None else f"{h.mean:.2f}"
        console.print(f"server batch sizes (from /metrics): {h.calls} model calls, mean {mean} inputs")
        hist = Table()
        hist.add_column("batch size <=")
        hist.add_column("calls", justify="right")
        for le, n in h.buckets.items():
            hist.add_row(le, str(n))
        console.print(hist)
    _print_cache(result, console)
    for note in result.notes:
        console.print(f"note: {note}")


def _print_cache(result: LoadtestResult, console: Console) -> None:
    """Answers by cache tier: share and latency; then the hit rate, model calls and the workload's kinds."""
    if not result.cache:
        return
    table = Table(title="answers by cache tier (X-Infopt-Cache)")
    for name in ("tier", "requests", "share", "mean ms", "p50 ms", "p95 ms"):
        table.add_column(name, justify="left" if name == "tier" else "right")
    for tier, s in result.cache["tiers"].items():
        ms = s["latency_ms"]
        table.add_row(tier if tier != "miss" else "miss (model)", str(s["requests"]), f"{s['rate']:.1%}",
                      _fmt(ms, "mean"), _fmt(ms, "p50"), _fmt(ms, "p95"))
    console.print(table)
    kinds = ", ".join(f"{k} {v}" for k, v in result.workload.items())
    console.print(f"cache hit rate {result.cache['hit_rate']:.1%}, model calls (misses) "
                  f"{result.cache['model_calls']}" + (f"; texts sent: {kinds}" if kinds else ""))
