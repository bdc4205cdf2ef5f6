"""The decision of a rollout: anytime-valid confidence sequences for bounded means, and the test of a candidate
against the user's bounds built on them.

A `BettingCS` keeps, for every candidate mean m on a grid, the wealth of a gambler betting that the true mean is
above m (and another betting below), each a mixture of constant bets ("diversified Kelly", Waudby-Smith & Ramdas
2023, "Estimating means of bounded random variables by betting"). Under the null the wealth is a nonnegative
supermartingale, so by Ville's inequality it ever reaches 1/alpha with probability at most alpha, however often it
is looked at: a bound shown once stays shown, and the error rate holds under continuous monitoring.

    cs = BettingCS(alpha_lower=0.05, alpha_upper=0.05, bounds=(0.01,))
    cs.update([0, 0, 1, 0])
    cs.shown_below(0.01), cs.lower, cs.upper
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["BETS", "BettingCS", "BoundCheck", "RolloutTest", "TestBounds"]

BETS = np.geomspace(0.005, 0.9, 16)
"""Bet sizes, as a share of the largest bet that keeps the wealth positive, mixed with equal weights."""

_CHUNK = 128


class BettingCS:
    """A confidence sequence for the mean of observations in [0, 1]: `lower` holds with probability at least
    1 - alpha_lower at all times at once, `upper` with 1 - alpha_upper. `bounds` are added to the grid, so that
    `shown_above(b)` / `shown_below(b)` are exact tests of the mean against b; `first_above[b]` is the count of
    observations at which b was first shown (None: not yet)."""

    def __init__(self, alpha_lower: float, alpha_upper: float, bounds: Iterable[float] = (), points: int = 200):
        self.bounds = tuple(sorted({float(b) for b in bounds}))
        inner = np.linspace(0.0, 1.0, points + 1)[1:-1] if points > 1 else np.array([])
        self.grid = np.unique(np.concatenate([inner, [b for b in self.bounds if 0 < b < 1]]))
        self.alpha_lower, self.alpha_upper = alpha_lower, alpha_upper
        self._lam_up = BETS[:, None] / self.grid[None, :]
        self._lam_dn = BETS[:, None] / (1.0 - self.grid[None, :])
        self._log_up = np.zeros_like(self._lam_up)
        self._log_dn = np.zeros_like(self._lam_dn)
        self._thr_lo, self._thr_up = math.log(1 / alpha_lower), math.log(1 / alpha_upper)
        self._rej_lo = np.zeros(self.grid.size, bool)  # ever shown: mean > m
        self._rej_up = np.zeros(self.grid.size, bool)  # ever shown: mean < m
        self.n = 0
        self.total = 0.0
        self.first_above: dict[float, int | None] = {b: None for b in self.bounds}
        self.first_below: dict[float, int | None] = {b: None for b in self.bounds}

    @staticmethod
    def _mix(log_wealth: np.ndarray) -> np.ndarray:
        """log of the mean wealth over the bets (axis -2)."""
        top = log_wealth.max(axis=-2, keepdims=True)
        return np.squeeze(top, -2) + np.log(np.exp(log_wealth - top).mean(axis=-2))

    def update(self, xs: float | Sequence[float] | np.ndarray) -> None:
        """Add observations (clipped to [0, 1]), in order."""
        values = np.clip(np.atleast_1d(np.asarray(xs, dtype=float)), 0.0, 1.0)
        for start in range(0, values.size, _CHUNK):
            chunk = values[start:start + _CHUNK]
            x = chunk[:, None, None]
            up = self._log_up + np.cumsum(np.log1p(self._lam_up * (x - self.grid)), axis=0)
            dn = self._log_dn + np.cumsum(np.log1p(self._lam_dn * (self.grid - x)), axis=0)
            ever_lo = np.logical_or.accumulate(self._mix(up) >= self._thr_lo, axis=0) | self._rej_lo
            ever_up = np.logical_or.accumulate(self._mix(dn) >= self._thr_up, axis=0) | self._rej_up
            for b in self.bounds:
                if not 0 < b < 1:
                    continue
                k = int(np.searchsorted(self.grid, b))
                if self.first_above[b] is None and ever_lo[-1, k]:
                    self.first_above[b] = self.n + int(np.argmax(ever_lo[:, k])) + 1
                if self.first_below[b] is None and ever_up[-1, k]:
                    self.first_below[b] = self.n + int(np.argmax(ever_up[:, k])) + 1
            self._log_up, self._log_dn = up[-1], dn[-1]
            self._rej_lo, self._rej_up = ever_lo[-1], ever_up[-1]
            self.n += chunk.size
            self.total += float(chunk.sum())

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def lower(self) -> float:
        """The running lower confidence bound (0 until shown otherwise)."""
        return float(self.grid[self._rej_lo].max()) if self._rej_lo.any() else 0.0

    @property
    def upper(self) -> float:
        """The running upper confidence bound (1 until shown otherwise)."""
        return float(self.grid[self._rej_up].min()) if self._rej_up.any() else 1.0

    def shown_above(self, b: float) -> bool:
        return self.first_above.get(b) is not None

    def shown_below(self, b: float) -> bool:
        return self.first_below.get(b) is not None


@dataclass(frozen=True)
class TestBounds:
    """The user's bounds on a candidate, and the error rate of each decision."""

    alpha: float = 0.05
    """The most probability of a wrong promotion, and of a wrong rollback, however often the test is looked at."""
    max_quality_drop: float = 0.02
    """Accuracy (labelled traffic) no worse than the current model's by more than this."""
    max_error_rate: float = 0.01
    """The candidate's share of failed requests at most this."""
    max_p95_ms: float | None = None
    """The candidate's p95 latency at most this (None: not tested)."""
    min_agreement: float | None = None
    """The candidate's agreement with the current model at least this (None: not tested)."""
    quantile: float = 0.95
    """The latency quantile `max_p95_ms` bounds."""


@dataclass(frozen=True)
class BoundCheck:
    """One bound's state: the metric's estimate and interval, the boundary, and whether it was shown good or bad
    (and after how many observations)."""

    name: str
    estimate: float | None
    lower: float
    upper: float
    boundary: float
    n: int
    good_at: int | None
    bad_at: int | None

    @property
    def status(self) -> Literal["good", "bad", "open"]:
        return "bad" if self.bad_at is not None else "good" if self.good_at is not None else "open"

    def to_json(self) -> dict[str, Any]:
        return {"bound": self.name, "status": self.status, "estimate": self.estimate, "lower": self.lower,
                "upper": self.upper, "boundary": self.boundary, "n": self.n, "good_at": self.good_at,
                "bad_at": self.bad_at}


def _min(*xs: int | None) -> int | None:
    known = [x for x in xs if x is not None]
    return min(known) if known else None


class RolloutTest:
    """The candidate against `bounds`, one confidence sequence per metric, fed per candidate request:
    `error` (0/1), `slow` (1 when over max_p95_ms), `agreement` (share of inputs agreeing with the current model,
    paired requests) and `accuracy` ((candidate correct - current correct + 1) / 2 per labelled paired request).
    Promotion needs every bound shown good (each at `alpha`); a rollback, any shown bad (`alpha` split over the
    bounds that can be shown bad)."""

    def __init__(self, bounds: TestBounds, points: int = 200) -> None:
        self.bounds = bounds
        b = bounds
        bad = 2 + (b.max_p95_ms is not None) + (b.min_agreement is not None)
        self.alpha_bad = b.alpha / bad
        self.acc_bound = (1 - b.max_quality_drop) / 2
        self.agree_bound = 1 - b.max_quality_drop
        self.slow_bound = round(1 - b.quantile, 12)
        agree = [self.agree_bound] + ([b.min_agreement] if b.min_agreement is not None else [])
        self.cs = {
            "error": BettingCS(self.alpha_bad, b.alpha, (b.max_error_rate,), points),
            "slow": BettingCS(self.alpha_bad, b.alpha, (self.slow_bound,), points),
            "agreement": BettingCS(b.alpha / 2, self.alpha_bad, agree, points),
            "accuracy": BettingCS(b.alpha / 2, self.alpha_bad, (self.acc_bound,), points),
        }

    def add(self, metric: str, xs: float | Sequence[float] | np.ndarray) -> None:
        self.cs[metric].update(xs)

    def checks(self) -> list[BoundCheck]:
        b, cs = self.bounds, self.cs
        err, acc, agr, slow = cs["error"], cs["accuracy"], cs["agreement"], cs["slow"]
        out = [BoundCheck("error_rate", err.mean, err.lower, err.upper, b.max_error_rate, err.n,
                          err.first_below[b.max_error_rate], err.first_above[b.max_error_rate])]
        if b.max_p95_ms is not None:
            out.append(BoundCheck(f"p{b.quantile * 100:g}_over_{b.max_p95_ms:g}ms", slow.mean, slow.lower,
                                  slow.upper, self.slow_bound, slow.n, slow.first_below[self.slow_bound],
                                  slow.first_above[self.slow_bound]))
        # accuracy drop <= disagreement rate, so agreement >= 1 - X also shows the quality bound
        good = _min(acc.first_above[self.acc_bound], agr.first_above[self.agree_bound])
        mean = acc.mean
        out.append(BoundCheck("quality_drop", None if mean is None else 2 * mean - 1, 2 * acc.lower - 1,
                              2 * acc.upper - 1, -b.max_quality_drop, acc.n, good, acc.first_below[self.acc_bound]))
        if b.min_agreement is not None:
            out.append(BoundCheck("agreement", agr.mean, agr.lower, agr.upper, b.min_agreement, agr.n,
                                  agr.first_above[b.min_agreement], agr.first_below[b.min_agreement]))
        return out

    def decision(self, n_candidate: int, min_requests: int, elapsed_s: float = 0.0,
                 max_duration_s: float = math.inf) -> tuple[str | None, str]:
        """("rollback" | "promote" | None, why), as of now."""
        checks = self.checks()
        bad = [c for c in checks if c.status == "bad"]
        if bad:
            return "rollback", "shown bad: " + ", ".join(c.name for c in bad)
        if n_candidate >= min_requests and all(c.status == "good" for c in checks):
            return "promote", "shown good on every bound: " + ", ".join(c.name for c in checks)
        if elapsed_s >= max_duration_s:
            left = [c.name for c in checks if c.status != "good"]
            return "rollback", f"max duration ({max_duration_s:g} s) reached; not shown good: {', '.join(left)}"
        return None, "running"

    def first_decision(self, min_requests: int) -> tuple[str | None, int | None]:
        """When every metric got one observation per request (a simulation): the decision the live test would
        have taken, and at which request (continuous monitoring)."""
        checks = self.checks()
        bad = _min(*(c.bad_at for c in checks))
        goods = [c.good_at for c in checks]
        good = max(max(g for g in goods if g is not None), min_requests) if all(g is not None for g in goods) \
            else None
        if bad is not None and (good is None or bad <= good):
            return "rollback", bad
        return ("promote", good) if good is not None else (None, None)
