"""Fit the semantic cache's threshold to a false-hit budget, with a Clopper-Pearson upper bound.

false-hit rate = wrong hits / all hits. For a threshold t, the hits on the calibration split are the pairs with
score >= t; the one-sided Clopper-Pearson upper bound (UCB) of their false-hit rate at `confidence` must be at
most `max_false_hit_rate`. The scan goes from strict to loose (a fixed sequence, as in Learn-then-Test): it
starts at the first threshold with enough hits for a zero-error UCB to pass, and stops at the first threshold
whose UCB fails; the loosest threshold before that is kept. If none passes, the threshold is above every score
(semantic hits off). Two methods are fitted side by side: `cosine` (plain threshold) and `cosine+guard`
(threshold on `GuardDecision.score`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import beta

from infopt.serve.cache._guard import GuardDecision, guard

__all__ = ["CALIBRATION_VERSION", "Calibration", "ScoredPair", "calibrate", "cp_upper", "curve", "score_pairs"]

CALIBRATION_VERSION = 1
DISABLED = math.inf


def cp_upper(wrong: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate with `wrong` of `n` (1.0 when n == 0)."""
    if n <= 0 or wrong >= n:
        return 1.0
    return float(beta.ppf(confidence, wrong + 1, n - wrong))


@dataclass(frozen=True)
class ScoredPair:
    """A labelled pair with its cosine and its guard score (cosine minus the guard's penalties)."""

    cosine: float
    guard_score: float
    same: bool
    kind: str = ""


def score_pairs(pairs: Sequence[Any], encoder: Any, batch: int = 64) -> list[ScoredPair]:
    """Embed both prompts of each pair (objects with .a, .b, .same, .kind) and run the guard."""
    out: list[ScoredPair] = []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        ea, eb = encoder.encode([p.a for p in chunk]), encoder.encode([p.b for p in chunk])
        for p, cos in zip(chunk, np.sum(ea * eb, axis=1), strict=True):
            out.append(ScoredPair(float(cos), guard(p.a, p.b, float(cos)).score, p.same, p.kind))
    return out


def curve(scores: Sequence[float], same: Sequence[bool], thresholds: Sequence[float],
          confidence: float = 0.95) -> list[dict[str, float]]:
    """Per threshold: hits, wrong hits, false-hit rate, its UCB, precision and recall (share of true pairs hit)."""
    s, y = np.asarray(scores, dtype=float), np.asarray(same, dtype=bool)
    positives = max(int(y.sum()), 1)
    rows = []
    for t in thresholds:
        hit = s >= t
        n, wrong = int(hit.sum()), int((hit & ~y).sum())
        rows.append({"threshold": float(t), "hits": n, "wrong": wrong, "false_hit_rate": wrong / n if n else 0.0,
                     "ucb": cp_upper(wrong, n, confidence), "precision": 1 - wrong / n if n else 1.0,
                     "recall": int((hit & y).sum()) / positives})
    return rows


def _fit(scores: Sequence[float], same: Sequence[bool], target: float, confidence: float) -> float:
    candidates = sorted({round(float(x), 4) for x in scores if x > 0}, reverse=True)
    min_hits = math.ceil(math.log(1 - confidence) / math.log(1 - target)) if target > 0 else math.inf
    best = DISABLED
    for row in curve(scores, same, candidates, confidence):
        if row["hits"] < min_hits:
            continue
        if row["ucb"] > target:
            break
        best = row["threshold"]
    return best


@dataclass
class Calibration:
    """A fitted threshold for `cosine+guard` (used) and `cosine` (for comparison); JSON with a version."""

    threshold: float
    cosine_threshold: float
    max_false_hit_rate: float
    confidence: float
    encoder: str = ""
    n_pairs: int = 0
    report: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    version: int = CALIBRATION_VERSION

    @property
    def enabled(self) -> bool:
        return math.isfinite(self.threshold)

    def accepts(self, decision: GuardDecision, threshold: float | None = None) -> bool:
        """A hit: no veto and score >= threshold (`threshold` overrides the fitted one, e.g. after tightening)."""
        t = self.threshold if threshold is None else threshold
        return not decision.vetoed and decision.score >= t

    def to_json(self) -> str:
        data = asdict(self)
        for k in ("threshold", "cosine_threshold"):
            data[k] = None if not math.isfinite(data[k]) else data[k]
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        data = json.loads(text)
        if data.get("version") != CALIBRATION_VERSION:
            raise ValueError(f"calibration version {data.get('version')} is not {CALIBRATION_VERSION}; recalibrate")
        for k in ("threshold", "cosine_threshold"):
            data[k] = DISABLED if data[k] is None else float(data[k])
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        return cls.from_json(Path(path).read_text())


def calibrate(pairs: Sequence[ScoredPair], max_false_hit_rate: float = 0.01, confidence: float = 0.95,
              encoder: str = "", grid: Sequence[float] | None = None) -> Calibration:
    """Fit both thresholds on scored calibration pairs (see the module docstring); `grid` sets the report rows."""
    if not 0 < max_false_hit_rate < 1 or not 0 < confidence < 1:
        raise ValueError("max_false_hit_rate and confidence must be in (0, 1)")
    same = [p.same for p in pairs]
    cos, gs = [p.cosine for p in pairs], [p.guard_score for p in pairs]
    t_guard = _fit(gs, same, max_false_hit_rate, confidence)
    t_cos = _fit(cos, same, max_false_hit_rate, confidence)
    rows = list(grid) if grid is not None else [round(x, 2) for x in np.arange(0.5, 1.0, 0.05)]
    report = {"cosine": curve(cos, same, sorted({*rows, *([t_cos] if math.isfinite(t_cos) else [])}), confidence),
              "cosine+guard": curve(gs, same, sorted({*rows, *([t_guard] if math.isfinite(t_guard) else [])}),
                                    confidence)}
    return Calibration(t_guard, t_cos, max_false_hit_rate, confidence, encoder, len(pairs), report)
