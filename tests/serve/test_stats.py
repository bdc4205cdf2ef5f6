"""The server's rolling windows: percentiles and the window's running sum (the cost gauge's mean)."""

from __future__ import annotations

import random

import pytest

from infopt.serve._stats import Stats, Window, percentile


def test_window_sum_follows_the_window() -> None:
    w = Window(size=5)
    rng = random.Random(0)
    for _ in range(37):
        w.add(rng.random())
        assert w.window_sum == pytest.approx(sum(w.values))
    assert w.count == 37 and len(w.values) == 5 and w.total > w.window_sum


def test_cost_per_1k_requests_is_the_windows_mean() -> None:
    stats = Stats(price_per_hour=3.6)
    m = stats.model("m")
    for s in (0.01, 0.02, 0.03):
        m.request_s.add(s)
    assert stats.cost_per_1k_requests(m) == pytest.approx(3.6 / 3600 * 0.02 * 1000)
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
