"""PSI, KS and the drift monitor's windows and alerts."""

from __future__ import annotations

import numpy as np

from infopt.monitor import DriftMonitor, DriftSettings, ks_statistic, psi


def test_psi_and_ks() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=2000), rng.normal(size=2000)
    assert psi(a, a) == 0.0 and ks_statistic(a, a) == 0.0
    assert psi(a, b) < 0.05 and ks_statistic(a, b) < 0.06
    assert psi(a, b + 1) > 0.5 and ks_statistic(a, b + 1) > 0.3
    assert psi(["x"] * 50 + ["y"] * 50, ["x"] * 90 + ["y"] * 10, categorical=True) > 0.4
    assert ks_statistic([0, 1], [2, 3]) == 1.0


def _stream(rng: np.random.Generator, n: int, shift: float = 0.0) -> list[tuple[int, str, float]]:
    lengths = rng.poisson(20 + shift * 20, n) + 3
    labels = np.where(rng.random(n) < 0.5 + shift * 0.3, "positive", "negative")
    scores = np.clip(rng.beta(8, 2 - shift, n), 0.5, 1)
    return [(int(length), str(y), float(s)) for length, y, s in zip(lengths, labels, scores, strict=True)]


def test_no_alert_on_the_same_distribution_and_an_alert_on_a_shift() -> None:
    rng = np.random.default_rng(0)
    monitor = DriftMonitor(DriftSettings(window=300, reference_size=600, check_every=25), "clf")
    for x in _stream(rng, 600 + 3000):
        monitor.add(*x)
    assert monitor.reference_source == "first requests" and monitor.checks > 100 and not monitor.alert
    for x in _stream(rng, 400, shift=1.0):
        monitor.add(*x)
        if monitor.alert:
            break
    assert monitor.alert and monitor.alerts["length"] and monitor.seen - 3600 < 300
    assert monitor.to_json()["alerted_at_input"] == monitor.alerted_at


def test_a_given_reference() -> None:
    rng = np.random.default_rng(1)
    monitor = DriftMonitor(DriftSettings(window=100, check_every=10), "clf")
    ref = _stream(rng, 500)
    monitor.set_reference([x[0] for x in ref], [x[1] for x in ref], [x[2] for x in ref], source="validation")
    for x in _stream(rng, 100, shift=1.0):
        monitor.add(*x)
    assert monitor.alert and monitor.to_json()["reference"] == "validation"
