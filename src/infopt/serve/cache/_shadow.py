"""Shadow verification: measure the semantic cache's false-hit rate in production and keep it under budget.

On a share of semantic hits (`should_verify`), the caller also runs the model off the request path and reports
whether the fresh answer agrees with the cached one (`record(agree)`). The verifier keeps the measured false-hit
rate and its one-sided Clopper-Pearson upper bound since the last change of threshold. It acts when the bound
is above the budget and either there are enough samples for a zero-error bound to be under it (`min_samples`,
299 for 1% at 95%), or the lower bound is above the budget too (clear evidence, acted on early). Acting means a
`step` towards stricter (`action="tighten"`; past `max_threshold`, hits are disabled) or disabling semantic hits
(`action="disable"`); each action is logged with its numbers, and the window restarts.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from typing import Literal

from scipy.stats import beta

from infopt.serve.cache._calibrate import cp_upper

__all__ = ["ShadowVerifier"]

log = logging.getLogger("infopt.serve.cache.shadow")


def _cp_lower(wrong: int, n: int, confidence: float) -> float:
    return 0.0 if wrong == 0 or n == 0 else float(beta.ppf(1 - confidence, wrong, n - wrong + 1))


class ShadowVerifier:
    """Tracks agreement of shadow-verified hits and tightens or disables the semantic tier."""

    def __init__(self, threshold: float, budget: float = 0.01, confidence: float = 0.95, share: float = 0.05,
                 step: float = 0.02, max_threshold: float = 0.99, action: Literal["tighten", "disable"] = "tighten",
                 min_samples: int | None = None, seed: int | None = None) -> None:
        if not 0 <= share <= 1 or not 0 < budget < 1:
            raise ValueError("share must be in [0, 1] and budget in (0, 1)")
        self.threshold, self.budget, self.confidence = threshold, budget, confidence
        self.share, self.step, self.max_threshold, self.action = share, step, max_threshold, action
        self.min_samples = min_samples or math.ceil(math.log(1 - confidence) / math.log(1 - budget))
        self.disabled = not math.isfinite(threshold)
        self.verified = self.disagreements = 0  # in the current window
        self.total_verified = self.total_disagreements = self.tightenings = 0
        self.last_reason = ""
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def should_verify(self) -> bool:
        """Whether the caller should shadow-run this hit (a `share` of hits, at random)."""
        return self._rng.random() < self.share

    @property
    def false_hit_rate(self) -> float:
        return self.disagreements / self.verified if self.verified else 0.0

    @property
    def upper_bound(self) -> float:
        return cp_upper(self.disagreements, self.verified, self.confidence)

    def record(self, agree: bool) -> None:
        """One shadow-verified hit: did the fresh answer agree with the cached one?"""
        with self._lock:
            self.verified += 1
            self.total_verified += 1
            if not agree:
                self.disagreements += 1
                self.total_disagreements += 1
            ucb = self.upper_bound
            lcb = _cp_lower(self.disagreements, self.verified, self.confidence)
            if ucb > self.budget and (self.verified >= self.min_samples or lcb > self.budget) and not self.disabled:
                self._act(ucb)

    def _act(self, ucb: float) -> None:
        why = (f"false-hit rate {self.disagreements}/{self.verified} = {self.false_hit_rate:.3%}, "
               f"{self.confidence:.0%} upper bound {ucb:.3%} > budget {self.budget:.2%}")
        if self.action == "tighten" and self.threshold + self.step <= self.max_threshold:
            self.threshold += self.step
            self.tightenings += 1
            self.last_reason = f"{why}: threshold tightened to {self.threshold:.3f}"
        else:
            self.disabled = True
            self.last_reason = f"{why}: semantic hits disabled"
        log.warning("semantic cache: %s", self.last_reason)
        self.verified = self.disagreements = 0

    def metrics(self) -> dict[str, float]:
        """Numbers for a metrics endpoint (window = since the last change of threshold)."""
        with self._lock:
            return {"verified": self.verified, "disagreements": self.disagreements,
                    "false_hit_rate": self.false_hit_rate, "false_hit_rate_ucb": self.upper_bound,
                    "total_verified": self.total_verified, "total_disagreements": self.total_disagreements,
                    "threshold": self.threshold, "tightenings": self.tightenings,
                    "disabled": float(self.disabled), "budget": self.budget}
