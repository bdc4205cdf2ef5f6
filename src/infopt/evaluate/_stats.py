"""How sure a measured quality is: seeded bootstrap intervals, prediction flips, and what difference is noise.

Every interval is a 95% percentile bootstrap over the test examples (numpy, vectorised, seeded so a re-run gives
the same numbers): the examples are drawn again with replacement `resamples` times and the metric recomputed on
each draw. Paired intervals draw the same examples for the variant and the baseline, so examples both get right or
both get wrong cancel out, and the interval of two models that agree is narrow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Comparison",
    "accuracy",
    "bootstrap",
    "classification_ci",
    "compare",
    "difference_words",
    "macro_f1",
    "mean_ci",
    "one_example_words",
    "perplexity_ci",
    "rejection",
    "within_noise",
]

RESAMPLES = 2000
"""Bootstrap draws per interval: the ends of a 95% interval move by about 0.1 of its width between seeds."""
LEVEL = 0.95
Ints = Sequence[int] | np.ndarray
"""Per-example labels or predictions: a list or a numpy array."""
Floats = Sequence[float] | np.ndarray
_CHUNK = 1 << 22
"""At most this many drawn indices at once (16 MB of int32), whatever the number of examples."""


def _indices(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """[rows, n] arrays of indices drawn with replacement, `resamples` rows in all, in chunks of bounded size."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // max(n, 1))
    for start in range(0, resamples, rows):
        yield rng.integers(0, n, size=(min(rows, resamples - start), n), dtype=np.int32)


def bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray], n: int, resamples: int = RESAMPLES, seed: int = 0,
    level: float = LEVEL,
) -> list[float]:
    """[low, high] percentile interval of `statistic`, which maps a [rows, n] index array to [rows] values."""
    if n < 1:
        return [float("nan"), float("nan")]
    values = np.concatenate([statistic(idx) for idx in _indices(n, resamples, seed)])
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def mean_ci(values: Floats, resamples: int = RESAMPLES, seed: int = 0) -> list[float]:
    """Interval of the mean of per-example values (e.g. 100 * correct, or the cosine to the parent)."""
    v = np.asarray(values, dtype=np.float64)
    return bootstrap(lambda idx: v[idx].mean(axis=1), len(v), resamples, seed)


def accuracy(predictions: Ints, labels: Ints) -> float:
    """Accuracy in percent."""
    p, y = np.asarray(predictions), np.asarray(labels)
    return float(100 * (p == y).mean()) if len(y) else float("nan")


def _macro_f1_rows(p: np.ndarray, y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Macro-F1 in percent of each row of [rows, n] predictions / labels, over the classes present in the row
    (in its labels or its predictions), as sklearn's `f1_score(average="macro")` counts them."""
    total = np.zeros(p.shape[0])
    present = np.zeros(p.shape[0])
    for c in classes:
        pc, yc = p == c, y == c
        tp = (pc & yc).sum(axis=1)
        support = pc.sum(axis=1) + yc.sum(axis=1)
        has = support > 0
        total += np.where(has, 2 * tp / np.maximum(support, 1), 0.0)
        present += has
    return 100 * total / np.maximum(present, 1)


def macro_f1(predictions: Ints, labels: Ints) -> float:
    """Macro-F1 in percent (the mean F1 of the classes that occur in the labels or the predictions)."""
    p, y = np.asarray(predictions)[None], np.asarray(labels)[None]
    return float(_macro_f1_rows(p, y, np.union1d(p, y))[0]) if y.size else float("nan")


def classification_ci(
    predictions: Ints, labels: Ints, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, list[float]]:
    """Intervals of accuracy and macro-F1 (percent), both from the same draws of the test examples."""
    p, y = np.asarray(predictions), np.asarray(labels)
    if len(p) != len(y):
        raise ValueError(f"{len(p)} predictions for {len(y)} labels")
    correct = 100.0 * (p == y)
    classes = np.union1d(p, y)
    return {
        "accuracy": bootstrap(lambda idx: correct[idx].mean(axis=1), len(y), resamples, seed),
        "macro_f1": bootstrap(lambda idx: _macro_f1_rows(p[idx], y[idx], classes), len(y), resamples, seed),
    }


def perplexity_ci(
    block_nll: Floats, block_tokens: Ints, resamples: int = RESAMPLES, seed: int = 0
) -> list[float]:
    """Interval of exp(sum NLL / sum tokens) when whole blocks of tokens are drawn again (tokens within a block
    are not independent, blocks nearly are)."""
    nll, tokens = np.asarray(block_nll, dtype=np.float64), np.asarray(block_tokens, dtype=np.float64)
    return bootstrap(lambda idx: np.exp(nll[idx].sum(axis=1) / tokens[idx].sum(axis=1)), len(nll), resamples, seed)


@dataclass(frozen=True)
class Comparison:
    """A variant's predictions against the baseline's on the same test examples."""

    n: int
    """Test examples compared."""
    flips: int
    """Examples whose prediction differs from the baseline's."""
    fixed: int
    """Examples the baseline got wrong and the variant right."""
    broken: int
    """Examples the baseline got right and the variant wrong."""
    delta: float
    """Accuracy of the variant minus the baseline's, in points."""
    delta_ci: list[float]
    """[low, high] of `delta`, a paired 95% bootstrap interval."""

    @property
    def within_noise(self) -> bool:
        return within_noise(self.delta_ci)

    def words(self) -> str:
        """E.g. "12 of 1,280 predictions flip (5 fixed, 7 broken); the difference -0.16 [-0.55, +0.23] ..."."""
        return (f"{self.flips:,} of {self.n:,} predictions flip ({self.fixed} fixed, {self.broken} broken); "
                f"{difference_words(self.delta, self.delta_ci)}")


def compare(
    predictions: Ints, baseline_predictions: Ints, labels: Ints,
    resamples: int = RESAMPLES, seed: int = 0,
) -> Comparison:
    """Flips against the baseline and the paired bootstrap interval of the accuracy difference in points."""
    p, b, y = (np.asarray(a) for a in (predictions, baseline_predictions, labels))
    if not len(p) == len(b) == len(y):
        raise ValueError(f"{len(p)} predictions, {len(b)} baseline predictions and {len(y)} labels")
    ok_p, ok_b = p == y, b == y
    diff = 100.0 * (ok_p.astype(np.float64) - ok_b)
    ci = bootstrap(lambda idx: diff[idx].mean(axis=1), len(y), resamples, seed)
    return Comparison(
        n=len(y), flips=int((p != b).sum()), fixed=int((ok_p & ~ok_b).sum()), broken=int((~ok_p & ok_b).sum()),
        delta=float(diff.mean()) if len(y) else float("nan"), delta_ci=ci,
    )


def within_noise(ci: Sequence[float]) -> bool:
    """Whether an interval of a difference holds 0 (the data cannot tell the two apart)."""
    return bool(ci[0] <= 0 <= ci[1])


def _points(x: float) -> str:
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def one_example_words(n: int) -> str:
    """How much one example moves a percentage scored on `n` of them: "one example is 0.08 points of 1,280"."""
    return f"one example is {_points(100 / n)} points of {n:,}" if n > 0 else "no examples were scored"


def difference_words(delta: float, ci: Sequence[float], unit: str = "points") -> str:
    """E.g. "the difference -0.31 [-0.80, +0.20] points is within noise" or "... is a real drop"."""
    span = f"{delta:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}] {unit}"
    if within_noise(ci):
        return f"the difference {span} is within noise"
    return f"the difference {span} is a real {'drop' if ci[1] < 0 else 'gain'}"


def rejection(comparison: Comparison, max_drop: float) -> str | None:
    """Why a variant is surely worse than the allowed drop (the high end of its paired interval is below
    -max_drop), or None when it may still meet it."""
    low, high = comparison.delta_ci
    if not high < -max_drop:
        return None
    return (f"accuracy {comparison.delta:+.2f} points against the baseline, 95% interval [{low:+.2f}, {high:+.2f}]: "
            f"even its high end misses the allowed drop of {max_drop:g} points")
