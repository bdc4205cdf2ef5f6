"""Requirements: defaults, validation, TOML with flag overrides, and every missed bound in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from infopt.errors import UserError
from infopt.evaluate import SpeedResult, VariantResult
from infopt.optimize import Requirements, parse_duration


def result(acc: float = 85.0, p50: float = 5.0, p95: float = 6.0, thr: float = 200.0, size: float = 90.0,
           rss: float = 600.0, delta_ci: list[float] | None = None) -> VariantResult:
    return VariantResult("v", "m", "classification", {"accuracy": acc}, SpeedResult(p50, p95, p95, thr, 32, 2),
                         size, rss, 1000, n_eval=1280, delta_ci=delta_ci)


def test_defaults_are_one_point_latency_and_twenty_minutes() -> None:
    r = Requirements()
    assert (r.priority, r.max_accuracy_drop, r.time_budget_s, r.p95_batch_size) == ("latency", 1.0, 1200.0, 1)


@pytest.mark.parametrize("text, seconds", [("20m", 1200), ("900s", 900), ("1h30m", 5400), ("45", 45), (30, 30)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "20x", "", "0s", "-5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UserError):
        parse_duration(text)


@pytest.mark.parametrize("bad", [{"priority": "speed"}, {"max_accuracy_drop": -1}, {"max_accuracy_drop": "lots"},
                                 {"max_p95_ms": 0}, {"p95_batch_size": 0}, {"time_budget_s": 0},
                                 {"price_per_hour": -2.0}])
def test_bad_values_are_user_errors(bad: dict[str, object]) -> None:
    with pytest.raises(UserError):
        Requirements(**bad)  # type: ignore[arg-type]


def test_points_and_relative_drops() -> None:
    base = result(acc=80.0)
    assert Requirements().misses(result(acc=79.1), base) == []
    (miss,) = Requirements().misses(result(acc=78.9, delta_ci=[-2.0, -0.2]), base)
    assert "78.9 vs baseline 80" in miss and "-1.10" in miss and "[-2.00, -0.20]" in miss and "1280" in miss
    rel = Requirements(max_accuracy_drop="1%")  # 1% of 80 = 0.8 points
    assert rel.misses(result(acc=79.3), base) == []
    assert len(rel.misses(result(acc=79.1), base)) == 1
    assert Requirements(max_accuracy_drop="2").max_accuracy_drop == 2.0


def test_every_bound_is_named_with_its_numbers() -> None:
    r = Requirements(max_p95_ms=5, min_throughput=300, max_size_mb=20, max_memory_mb=500)
    misses = r.misses(result(p95=7.5, thr=250.0, size=22.7, rss=612.0), result())
    text = " | ".join(misses)
    assert len(misses) == 4
    for words in ("p95 7.50 ms at batch 1", "250.0 items/s", "22.7 MB is over the bound 20", "612 MB"):
        assert words in text


def test_p95_at_a_larger_batch_needs_its_measurement() -> None:
    r = Requirements(max_p95_ms=20, p95_batch_size=8)
    assert "not measured" in r.misses(result(), result())[0]
    assert r.misses(result(), result(), p95_at_batch_ms=12.0) == []
    assert "at batch 8" in r.misses(result(), result(), p95_at_batch_ms=25.0)[0]


def test_perplexity_is_lower_is_better() -> None:
    base = VariantResult("b", "m", "causal-lm", {"perplexity": 20.0}, SpeedResult(1, 1, 1, 1, 1, 1), 1, 1, 1)
    worse = VariantResult("v", "m", "causal-lm", {"perplexity": 21.0}, SpeedResult(1, 1, 1, 1, 1, 1), 1, 1, 1)
    assert Requirements(max_accuracy_drop="10%").misses(worse, base, "perplexity") == []
    assert Requirements(max_accuracy_drop="2%").misses(worse, base, "perplexity")


def test_toml_file_with_flag_overrides(tmp_path: Path) -> None:
    path = tmp_path / "needs.toml"
    path.write_text('priority = "size"\nmax_accuracy_drop = "1%"\nmax_size_mb = 30\ntime_budget = "15m"\n')
    r = Requirements.from_toml(path, max_size_mb=25.0, priority=None)
    assert (r.priority, r.max_accuracy_drop, r.max_size_mb, r.time_budget_s) == ("size", "1%", 25.0, 900.0)
    assert Requirements.from_toml(path, time_budget_s=60.0).time_budget_s == 60.0
    path.write_text("max_sizes = 3\n")
    with pytest.raises(UserError, match="max_sizes"):
        Requirements.from_toml(path)
    path.write_text("priority = 3\n")
    with pytest.raises(UserError, match=r"needs\.toml"):
        Requirements.from_toml(path)
    with pytest.raises(UserError, match="Cannot read"):
        Requirements.from_toml(tmp_path / "missing.toml")
