"""Clopper-Pearson bound and the threshold fit."""

import math
from pathlib import Path

import pytest

from infopt.serve.cache._calibrate import Calibration, ScoredPair, calibrate, cp_upper, curve
from infopt.serve.cache._guard import guard


def test_cp_upper_known_values() -> None:
    assert cp_upper(0, 299) == pytest.approx(0.00997, abs=2e-4)  # the "rule of three" region
    assert cp_upper(0, 0) == 1.0
    assert cp_upper(5, 100) > 0.05 > cp_upper(0, 100)


def synthetic(n_pos: int = 600, n_neg: int = 600) -> list[ScoredPair]:
    pos = [ScoredPair(0.6 + 0.4 * i / n_pos, 0.6 + 0.4 * i / n_pos, True) for i in range(n_pos)]
    neg = [ScoredPair(0.2 + 0.5 * i / n_neg, 0.2 + 0.5 * i / n_neg - (1.0 if i % 2 else 0.0), False)
           for i in range(n_neg)]
    return pos + neg


def test_fit_meets_the_budget_on_calibration_data() -> None:
    pairs = synthetic()
    cal = calibrate(pairs, 0.01, 0.95)
    assert cal.enabled and math.isfinite(cal.cosine_threshold)
    row = curve([p.guard_score for p in pairs], [p.same for p in pairs], [cal.threshold])[0]
    assert row["ucb"] <= 0.01 and row["hits"] >= 299
    assert cal.threshold <= cal.cosine_threshold  # the guard removed half the negatives: a looser threshold
    assert {r["threshold"] for r in cal.report["cosine+guard"]} >= {0.5, 0.9}


def test_no_threshold_passes_when_too_few_pairs() -> None:
    cal = calibrate(synthetic(50, 50), 0.01, 0.95)
    assert not cal.enabled and not cal.accepts(guard("a", "a", 1.0))


def test_json_roundtrip_and_version(tmp_path: Path) -> None:
    cal = calibrate(synthetic(), 0.01, 0.95, encoder="x")
    cal.save(tmp_path / "c.json")
    back = Calibration.load(tmp_path / "c.json")
    assert back.threshold == cal.threshold and back.encoder == "x" and back.report == cal.report
    disabled = calibrate(synthetic(10, 10))
    assert not Calibration.from_json(disabled.to_json()).enabled
    (tmp_path / "old.json").write_text((tmp_path / "c.json").read_text().replace('"version": 1', '"version": 0'))
    with pytest.raises(ValueError, match="version"):
        Calibration.load(tmp_path / "old.json")


def test_accepts_respects_veto() -> None:
    cal = calibrate(synthetic(), 0.01, 0.95)
    assert cal.accepts(guard("Add 2 users", "Add two users", 0.99))
    assert not cal.accepts(guard("Add 2 users", "Add 3 users", 0.99))
