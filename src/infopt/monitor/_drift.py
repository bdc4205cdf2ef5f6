"""Drift of a served classifier's inputs and outputs: input lengths (tokens), predicted-label distribution and
confidence over a sliding window, against a reference window (a validation set run through the model, or the first
requests served), by population stability index (PSI) and two-sample Kolmogorov-Smirnov statistic.

    drift = DriftMonitor(DriftSettings(window=500, psi_threshold=0.25, ks_threshold=0.2))
    drift.set_reference(lengths, labels, scores)        # else the first `window` observations are the reference
    drift.add(length, label, score)                     # one input; drift.alerts says which features alert
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FEATURES", "DriftMonitor", "DriftSettings", "ks_statistic", "psi"]

log = logging.getLogger(__name__)

FEATURES = ("length", "label", "confidence")
_EPS = 1e-4


def psi(reference: Sequence[Any] | np.ndarray, current: Sequence[Any] | np.ndarray, bins: int = 10,
        categorical: bool = False) -> float:
    """Population stability index, sum over bins of (p - q) ln(p / q): bins are the reference's deciles (or its
    categories), shares floored at 1e-4."""
    ref, cur = np.asarray(reference), np.asarray(current)
    if ref.size == 0 or cur.size == 0:
        return 0.0
    if categorical:
        cats = sorted(set(ref.tolist()) | set(cur.tolist()))
        p = np.array([np.mean(ref == c) for c in cats])
        q = np.array([np.mean(cur == c) for c in cats])
    else:
        edges = np.unique(np.quantile(ref.astype(float), np.linspace(0, 1, bins + 1)[1:-1]))
        p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1) / ref.size
        q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1) / cur.size
    p, q = np.maximum(p, _EPS), np.maximum(q, _EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_statistic(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    ref, cur = np.sort(np.asarray(reference, float)), np.sort(np.asarray(current, float))
    if ref.size == 0 or cur.size == 0:
        return 0.0
    points = np.concatenate([ref, cur])
    gap = np.searchsorted(ref, points, side="right") / ref.size - np.searchsorted(cur, points, side="right") / cur.size
    return float(np.abs(gap).max())


@dataclass(frozen=True)
class DriftSettings:
    """How drift is measured: window sizes, thresholds, how often."""

    window: int = 500
    """Inputs in the sliding window compared with the reference."""
    reference_size: int = 1000
    """Inputs kept as the reference (when it is the first requests served)."""
    psi_threshold: float = 0.25
    """Alert when a feature's PSI is over this (0.1: some shift, 0.25: a large one)."""
    ks_threshold: float = 0.2
    """Alert when the KS statistic of lengths or confidence is over this."""
    check_every: int = 50
    """Inputs between two checks, once the window is full."""


class DriftMonitor:
    """The reference and sliding windows of one served model, the latest statistics, and the alerts."""

    def __init__(self, settings: DriftSettings, model: str = "") -> None:
        self.settings = settings
        self.model = model
        self.reference: dict[str, list[Any]] | None = None
        self.reference_source = ""
        self._first: dict[str, list[Any]] = {f: [] for f in FEATURES}
        self.window: dict[str, deque[Any]] = {f: deque(maxlen=settings.window) for f in FEATURES}
        self.stats: dict[str, dict[str, float]] = {}
        self.alerts: dict[str, bool] = {f: False for f in FEATURES}
        self.alerted_at: int | None = None
        self.seen = 0
        self.checks = 0
        self._since = 0

    def set_reference(self, lengths: Sequence[int], labels: Sequence[str], scores: Sequence[float],
                      source: str = "validation") -> None:
        """Fix the reference window (e.g. a validation split run through the model)."""
        self.reference = {"length": list(lengths), "label": list(labels), "confidence": list(scores)}
        self.reference_source = source

    def add(self, length: int, label: str, score: float) -> None:
        """One served input (its token count, predicted label and its probability)."""
        self.seen += 1
        values = {"length": length, "label": label, "confidence": score}
        if self.reference is None:
            for f in FEATURES:
                self._first[f].append(values[f])
            if len(self._first["length"]) >= self.settings.reference_size:
                self.reference, self.reference_source = self._first, "first requests"
            return
        for f in FEATURES:
            self.window[f].append(values[f])
        self._since += 1
        if len(self.window["length"]) >= self.settings.window and self._since >= self.settings.check_every:
            self.check()

    def check(self) -> dict[str, dict[str, float]]:
        """Compute the statistics of the window against the reference now, and raise or clear alerts."""
        self._since = 0
        if self.reference is None or not self.window["length"]:
            return self.stats
        self.checks += 1
        s = self.settings
        stats: dict[str, dict[str, float]] = {}
        for f in FEATURES:
            ref, cur = self.reference[f], list(self.window[f])
            stats[f] = {"psi": psi(ref, cur, categorical=f == "label")}
            if f != "label":
                stats[f]["ks"] = ks_statistic(ref, cur)
        self.stats = stats
        was = any(self.alerts.values())
        for f, st in stats.items():
            self.alerts[f] = st["psi"] > s.psi_threshold or st.get("ks", 0.0) > s.ks_threshold
        if any(self.alerts.values()) and not was:
            self.alerted_at = self.seen
            log.warning("drift alert on model %r after %d inputs: %s", self.model, self.seen,
                        ", ".join(f"{f} {st}" for f, st in stats.items() if self.alerts[f]))
        elif was and not any(self.alerts.values()):
            log.info("drift alert on model %r cleared", self.model)
        return stats

    @property
    def alert(self) -> bool:
        return any(self.alerts.values())

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "alert": self.alert, "alerts": dict(self.alerts), "stats": self.stats,
                "inputs_seen": self.seen, "checks": self.checks, "alerted_at_input": self.alerted_at,
                "reference": self.reference_source or "pending (the first inputs served)",
                "reference_size": len(self.reference["length"]) if self.reference else len(self._first["length"]),
                "window": len(self.window["length"]), "psi_threshold": self.settings.psi_threshold,
                "ks_threshold": self.settings.ks_threshold}
