"""Shadow verification: tightens or disables when the upper bound passes the budget."""

import logging

import pytest

from infopt.serve.cache._shadow import ShadowVerifier


def test_keeps_threshold_when_answers_agree() -> None:
    s = ShadowVerifier(0.8, budget=0.01)
    for _ in range(400):
        s.record(True)
    m = s.metrics()
    assert m["threshold"] == 0.8 and m["false_hit_rate_ucb"] < 0.01 and not s.disabled


def test_tightens_on_clear_evidence(caplog: pytest.LogCaptureFixture) -> None:
    s = ShadowVerifier(0.8, budget=0.01, step=0.05)
    with caplog.at_level(logging.WARNING, "infopt.serve.cache.shadow"):
        for i in range(40):
            s.record(i % 5 != 0)  # 20% disagree
    assert s.threshold > 0.8 and s.tightenings >= 1 and "upper bound" in caplog.text
    assert s.metrics()["total_disagreements"] == 8


def test_disables_past_max_or_by_action() -> None:
    s = ShadowVerifier(0.97, budget=0.01, step=0.05, max_threshold=0.99)
    for _ in range(20):
        s.record(False)
    assert s.disabled and "disabled" in s.last_reason
    d = ShadowVerifier(0.8, action="disable")
    for _ in range(20):
        d.record(False)
    assert d.disabled and d.threshold == 0.8


def test_share_of_hits_verified() -> None:
    s = ShadowVerifier(0.8, share=0.25, seed=0)
    n = sum(s.should_verify() for _ in range(4000))
    assert 800 < n < 1200
    assert not any(ShadowVerifier(0.8, share=0.0).should_verify() for _ in range(100))
