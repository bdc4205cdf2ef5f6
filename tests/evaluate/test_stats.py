"""Bootstrap intervals against closed forms, macro-F1 against sklearn, flips, paired intervals and the words."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from infopt.evaluate import (
    Comparison,
    _stats,
    classification_ci,
    compare,
    difference_words,
    mean_ci,
    one_example_words,
    perplexity_ci,
    rejection,
    within_noise,
)
from infopt.evaluate._stats import accuracy, bootstrap, macro_f1

Z = 1.959964  # the normal 97.5% quantile


def _outcomes(n: int, p: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and labels with exactly round(n * p) correct, two classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    pred = labels.copy()
    wrong = rng.choice(n, n - round(n * p), replace=False)
    pred[wrong] = 1 - pred[wrong]
    return pred, labels


# --- intervals against closed forms ---


@pytest.mark.parametrize(("n", "p"), [(10_000, 0.8), (4_000, 0.5), (20_000, 0.95)])
def test_accuracy_interval_matches_the_binomial_normal_approximation(n: int, p: float) -> None:
    pred, labels = _outcomes(n, p)
    low, high = classification_ci(pred, labels)["accuracy"]
    half = 100 * Z * math.sqrt(p * (1 - p) / n)
    assert accuracy(pred, labels) == pytest.approx(100 * p)
    assert low == pytest.approx(100 * p - half, abs=0.12 * half)
    assert high == pytest.approx(100 * p + half, abs=0.12 * half)


def test_mean_interval_matches_the_standard_error() -> None:
    values = np.random.default_rng(1).normal(0.9, 0.05, 5_000)
    low, high = mean_ci(values)
    half = Z * values.std() / math.sqrt(len(values))
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.1 * half)
    assert high - low == pytest.approx(2 * half, rel=0.1)


def test_paired_interval_matches_the_standard_error_of_the_differences() -> None:
    base, labels = _outcomes(8_000, 0.85, seed=2)
    pred = base.copy()
    rng = np.random.default_rng(3)
    flip = rng.choice(len(pred), 400, replace=False)
    pred[flip] = 1 - pred[flip]
    c = compare(pred, base, labels)
    d = 100.0 * ((pred == labels).astype(float) - (base == labels))
    half = Z * d.std() / math.sqrt(len(d))
    assert c.delta == pytest.approx(d.mean())
    assert c.delta_ci[0] == pytest.approx(d.mean() - half, abs=0.12 * half)
    assert c.delta_ci[1] == pytest.approx(d.mean() + half, abs=0.12 * half)


def test_interval_narrows_with_more_examples() -> None:
    widths = []
    for n in (500, 2_000, 8_000):
        low, high = classification_ci(*_outcomes(n, 0.8))["accuracy"]
        widths.append(high - low)
    assert widths[0] > 1.7 * widths[1] > 1.7 * 1.7 * widths[2]  # about 1 / sqrt(n): halves for 4x the examples


# --- paired intervals and flips ---


def test_paired_interval_shrinks_when_predictions_agree() -> None:
    base, labels = _outcomes(1_280, 0.85, seed=4)
    rng = np.random.default_rng(5)
    widths = []
    for flips in (0, 10, 50, 200):
        pred = base.copy()
        idx = rng.choice(len(pred), flips, replace=False)
        pred[idx] = 1 - pred[idx]
        c = compare(pred, base, labels)
        assert c.flips == flips
        widths.append(c.delta_ci[1] - c.delta_ci[0])
    assert widths[0] == 0.0  # identical predictions: the difference is exactly 0 on every draw
    assert widths == sorted(widths) and widths[1] < widths[2] < widths[3]
    # paired is far narrower than two unpaired intervals of the same accuracy
    unpaired = classification_ci(base, labels)["accuracy"]
    assert widths[1] < 0.3 * (unpaired[1] - unpaired[0])


def test_compare_counts_flips_fixed_and_broken() -> None:
    labels = [0, 1, 2, 0, 1, 2, 0, 1]
    base = [0, 1, 2, 1, 1, 0, 0, 1]  # wrong on 3 and 5
    pred = [0, 1, 1, 0, 2, 1, 0, 1]  # fixes 3, breaks 2 and 4, changes 5 from one wrong class to another
    c = compare(pred, base, labels)
    assert (c.n, c.flips, c.fixed, c.broken) == (8, 4, 1, 2)
    assert c.delta == pytest.approx(100 * (5 / 8 - 6 / 8))
    assert c.delta_ci[0] <= c.delta <= c.delta_ci[1]
    assert "4 of 8 predictions flip (1 fixed, 2 broken)" in c.words()


def test_compare_rejects_misaligned_inputs() -> None:
    with pytest.raises(ValueError, match="3 predictions, 2 baseline"):
        compare([0, 1, 0], [0, 1], [0, 1, 0])


def test_a_real_drop_is_outside_noise() -> None:
    base, labels = _outcomes(1_280, 0.85, seed=6)
    pred = base.copy()
    right = np.flatnonzero(base == labels)[:60]  # 60 examples broken, none fixed: -4.69 points
    pred[right] = 1 - pred[right]
    c = compare(pred, base, labels)
    assert c.delta == pytest.approx(-100 * 60 / 1_280)
    assert not c.within_noise and c.delta_ci[1] < 0
    assert "is a real drop" in c.words()


# --- macro-F1 ---


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 60)
    pred = np.where(rng.random(60) < 0.6, labels, rng.integers(0, 5, 60))  # class 4 only ever predicted
    assert macro_f1(pred, labels) == pytest.approx(100 * f1_score(labels, pred, average="macro"))


def test_macro_f1_interval_is_sklearn_on_each_draw() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, 40)
    pred = np.where(rng.random(40) < 0.7, labels, rng.integers(0, 3, 40))
    expected = bootstrap(
        lambda idx: np.array([100 * f1_score(labels[r], pred[r], average="macro") for r in idx]), 40, 300, seed=3
    )
    assert classification_ci(pred, labels, resamples=300, seed=3)["macro_f1"] == pytest.approx(expected)


# --- perplexity ---


def test_perplexity_interval() -> None:
    nll = [2.0 * 255] * 10
    assert perplexity_ci(nll, [255] * 10) == pytest.approx([math.exp(2.0)] * 2)  # identical blocks: no spread
    rng = np.random.default_rng(8)
    tokens = rng.integers(100, 256, 40)
    nll_varied = tokens * rng.normal(3.0, 0.3, 40)
    low, high = perplexity_ci(nll_varied, tokens)
    point = math.exp(nll_varied.sum() / tokens.sum())
    assert low < point < high
    assert math.log(high) - math.log(low) == pytest.approx(2 * Z * 0.3 / math.sqrt(40), rel=0.25)


# --- mechanics ---


def test_bootstrap_is_seeded() -> None:
    pred, labels = _outcomes(1_000, 0.7)
    assert classification_ci(pred, labels, seed=1) == classification_ci(pred, labels, seed=1)
    assert classification_ci(pred, labels, seed=1) != classification_ci(pred, labels, seed=2)


def test_draws_come_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stats, "_CHUNK", 1_000)
    chunks = list(_stats._indices(300, 25, seed=0))
    assert [c.shape for c in chunks] == [(3, 300)] * 8 + [(1, 300)]
    assert all(c.min() >= 0 and c.max() < 300 for c in chunks)
    pred, labels = _outcomes(300, 0.8)
    low, high = classification_ci(pred, labels)["accuracy"]
    assert low < 80 < high


def test_no_examples_gives_nan() -> None:
    assert all(math.isnan(x) for x in mean_ci([]))
    assert math.isnan(accuracy([], []))


# --- words ---


def test_one_example_words() -> None:
    assert one_example_words(1_280) == "one example is 0.08 points of 1,280"
    assert one_example_words(72) == "one example is 1.39 points of 72"
    assert one_example_words(5) == "one example is 20.0 points of 5"
    assert one_example_words(0) == "no examples were scored"


def test_difference_words() -> None:
    assert difference_words(-0.31, [-0.8, 0.2]) == "the difference -0.31 [-0.80, +0.20] points is within noise"
    assert difference_words(-1.2, [-2.0, -0.4]) == "the difference -1.20 [-2.00, -0.40] points is a real drop"
    assert difference_words(0.9, [0.1, 1.7]).endswith("is a real gain")
    assert within_noise([0.0, 0.0]) and within_noise([-1, 0]) and not within_noise([0.01, 1])


def test_rejection_needs_the_high_end_below_the_allowed_drop() -> None:
    def cmp(high: float) -> Comparison:
        return Comparison(n=100, flips=5, fixed=0, broken=5, delta=high - 1, delta_ci=[high - 2, high])

    assert rejection(cmp(-1.5), 1.0) is not None
    assert "misses the allowed drop of 1 points" in (rejection(cmp(-1.5), 1.0) or "")
    assert rejection(cmp(-1.0), 1.0) is None  # exactly at the bound: may still meet it
    assert rejection(cmp(-0.5), 1.0) is None
    assert rejection(cmp(-0.5), 0.0) is not None  # no drop allowed and surely worse
