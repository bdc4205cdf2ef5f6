"""The confidence sequences and the rollout test (pure numpy, seeded)."""

from __future__ import annotations

import numpy as np
import pytest

from infopt.monitor import BettingCS, RolloutTest, TestBounds


def test_the_sequence_covers_the_mean_at_every_look() -> None:
    rng = np.random.default_rng(0)
    misses = 0
    for _ in range(200):
        cs = BettingCS(0.05, 0.05, (0.3,), points=50)
        cs.update((rng.random(400) < 0.3).astype(float))
        misses += cs.shown_above(0.3) or cs.shown_below(0.3)  # "ever" excluded, checked after every observation
    assert misses / 200 <= 0.1  # each side at most 0.05


def test_it_shows_what_is_true_and_stays_shown() -> None:
    cs = BettingCS(0.05, 0.05, (0.01, 0.5))
    cs.update(np.zeros(800))
    assert cs.shown_below(0.01) and cs.shown_below(0.5) and not cs.shown_above(0.01)
    assert cs.first_below[0.5] is not None and cs.first_below[0.01] is not None
    assert cs.first_below[0.5] < cs.first_below[0.01] < 800
    cs.update(np.ones(50))  # a later run of ones does not take it back
    assert cs.shown_below(0.01) and cs.upper <= 0.05


def test_one_at_a_time_equals_all_at_once() -> None:
    xs = (np.random.default_rng(1).random(300) < 0.2).astype(float)
    a, b = BettingCS(0.05, 0.05, (0.4,)), BettingCS(0.05, 0.05, (0.4,))
    a.update(xs)
    for x in xs:
        b.update(float(x))
    assert (a.lower, a.upper, a.first_below, a.n) == (b.lower, b.upper, b.first_below, b.n)


def _feed(test: RolloutTest, n: int, acc_diff: float, errors: float, slow: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    test.add("error", (rng.random(n) < errors).astype(float))
    test.add("slow", (rng.random(n) < slow).astype(float))
    d = np.where(rng.random(n) < abs(acc_diff), np.sign(acc_diff), 0.0)
    test.add("accuracy", (d + 1) / 2)
    test.add("agreement", 1 - np.abs(d))


def test_a_worse_candidate_is_rolled_back_and_a_better_one_promoted() -> None:
    bounds = TestBounds(max_quality_drop=0.02, max_error_rate=0.05, max_p95_ms=50)
    worse = RolloutTest(bounds)
    _feed(worse, 300, -0.3, 0.0, 0.0)
    assert worse.decision(300, 100)[0] == "rollback"
    assert worse.first_decision(100)[0] == "rollback"
    better = RolloutTest(bounds)
    _feed(better, 400, 0.3, 0.0, 0.0)
    decision, why = better.decision(400, 100)
    assert decision == "promote", why
    assert better.first_decision(100) == ("promote", max(c.good_at or 0 for c in better.checks()))
    assert better.decision(400, 1000)[0] is None  # the minimum sample
    slow = RolloutTest(bounds)
    _feed(slow, 100, 0.0, 0.0, 0.5)
    assert slow.decision(100, 10) == ("rollback", "shown bad: p95_over_50ms")


def test_the_maximum_duration_rolls_back_what_is_not_shown_good() -> None:
    test = RolloutTest(TestBounds())
    _feed(test, 20, 0.0, 0.0, 0.0)
    assert test.decision(20, 10, elapsed_s=5, max_duration_s=10)[0] is None
    decision, why = test.decision(20, 10, elapsed_s=11, max_duration_s=10)
    assert decision == "rollback" and "max duration" in why


@pytest.mark.parametrize("seed", range(3))
def test_an_equal_candidate_at_the_boundaries_is_rarely_decided(seed: int) -> None:
    """Equal to the current model, error rate and p95 exactly at their bounds: 40 runs, few decisions."""
    rng = np.random.default_rng(seed)
    decided = 0
    for _ in range(40):
        test = RolloutTest(TestBounds(alpha=0.05, max_quality_drop=0.0, max_error_rate=0.05, max_p95_ms=10), points=0)
        n = 500
        test.add("error", (rng.random(n) < 0.05).astype(float))
        test.add("slow", (rng.random(n) < 0.05).astype(float))
        a, b = rng.random(n) < 0.8, rng.random(n) < 0.8
        test.add("accuracy", ((b.astype(float) - a) + 1) / 2)
        test.add("agreement", (a == b).astype(float))
        decided += test.first_decision(50)[0] is not None
    assert decided <= 8
