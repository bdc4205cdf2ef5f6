"""The cascade's threshold by risk control: Learn-then-Test with fixed-sequence testing and Clopper-Pearson bounds.

The risk of a threshold t is the rate of *harmful flips*: rows the large model gets right and the cascade gets
wrong. It bounds the accuracy loss against the large model alone (loss = harmful - helpful flips <= harmful flips).
Thresholds are tested on a grid fixed before any data is seen, from the most cautious (every row escalated) down;
each test rejects "risk(t) > max_drop" at level delta when the one-sided Clopper-Pearson upper bound of the harmful
rate is at most max_drop. Testing stops at the first threshold that fails (fixed-sequence testing needs no
multiplicity correction), and the last one that passed, the one that escalates least, is chosen. With probability at
least 1 - delta over the validation draw, the chosen threshold's expected accuracy loss on new data from the same
distribution is at most max_drop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import beta

from infopt._config import check_number
from infopt.data import TextDataset
from infopt.errors import UserError
from infopt.models import LoadedModel

__all__ = [
    "ESCALATE_ALL",
    "THRESHOLD_GRID",
    "ThresholdChoice",
    "batched_logits",
    "calibrate",
    "choose_threshold",
    "clopper_pearson_upper",
    "fixed_sequence",
]

ESCALATE_ALL = 1.0 + 1e-6
"""A threshold no probability reaches: every row goes to the large model."""

THRESHOLD_GRID: tuple[float, ...] = tuple(sorted(
    {ESCALATE_ALL, *np.round(np.linspace(0.0, 1.0, 201), 6).tolist(),
     *np.round(1.0 - np.logspace(-6, -2, 41), 9).tolist()},
    reverse=True,
))
"""The thresholds tried, most cautious first; fixed in advance, as fixed-sequence testing requires."""

RULE = "learn-then-test, fixed-sequence, one-sided Clopper-Pearson bound of the harmful-flip rate"


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """One-sided (1 - delta) Clopper-Pearson upper bound of a rate with `k` events in `n` trials."""
    if n <= 0:
        return 1.0
    return 1.0 if k >= n else float(beta.ppf(1.0 - delta, k + 1, n - k))


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and the validation numbers that justify it."""

    threshold: float
    """Rows whose top small-model probability is below it go to the large model."""
    passed: bool
    """Whether any threshold met the bound (if not, `threshold` escalates every row)."""
    n: int
    """Validation rows it was chosen on."""
    harmful: int
    """Rows the large model gets right and the cascade wrong, at `threshold`."""
    helpful: int
    """Rows the cascade gets right and the large model wrong, at `threshold`."""
    drop_bound: float
    """The (1 - delta) upper bound of the accuracy loss vs the large model, in points."""
    escalation_rate: float
    """Share of validation rows sent to the large model."""
    accuracy: float
    """The cascade's validation accuracy, percent."""
    large_accuracy: float
    """The large model's validation accuracy, percent."""
    small_accuracy: float
    """The small model's validation accuracy, percent."""
    max_drop: float
    """The allowed loss, in points."""
    delta: float
    """The bound's error level."""
    rule: str = RULE
    """How the threshold was chosen."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(max_drop: float, delta: float) -> None:
    check_number("Cascade", "max_drop", max_drop, low=0, high=100, bounds="(]", example=0.5)
    check_number("Cascade", "delta", delta, low=0, high=1, bounds="()", example=0.1)


def fixed_sequence(
    grid: tuple[float, ...], right_at: Callable[[float], torch.Tensor], reference_right: torch.Tensor,
    max_drop: float, delta: float,
) -> tuple[float | None, int, float]:
    """(last threshold of `grid` that passed or None, its harmful count, its bound in points); `right_at(t)` is the
    [N] bool tensor of rows the candidate gets right at threshold t, `reference_right` the large model's."""
    _check(max_drop, delta)
    n = len(reference_right)
    if n == 0:
        raise UserError("The cascade's threshold needs validation examples.", "give more labelled data.")
    chosen: tuple[float | None, int, float] = (None, 0, 100.0)
    for t in grid:
        harmful = int((reference_right & ~right_at(t)).sum())
        bound = 100 * clopper_pearson_upper(harmful, n, delta)
        if bound > max_drop:
            break
        chosen = (t, harmful, bound)
    return chosen


def choose_threshold(
    small_logits: torch.Tensor, large_logits: torch.Tensor, labels: torch.Tensor, max_drop: float,
    delta: float = 0.1, grid: tuple[float, ...] = THRESHOLD_GRID,
) -> ThresholdChoice:
    """The least-escalating threshold whose accuracy loss vs the large model is bounded by `max_drop` points at
    level `delta`, from both models' [N, C] validation logits and the [N] labels."""
    conf = torch.softmax(small_logits.float(), -1).amax(-1)
    small_pred, large_pred = small_logits.argmax(-1), large_logits.argmax(-1)
    large_right = large_pred == labels

    def pred_at(t: float) -> torch.Tensor:
        return torch.where(conf < t, large_pred, small_pred)

    t, _, bound = fixed_sequence(grid, lambda t: pred_at(t) == labels, large_right, max_drop, delta)
    threshold = ESCALATE_ALL if t is None else t
    right = pred_at(threshold) == labels
    n = len(labels)
    return ThresholdChoice(
        threshold=threshold, passed=t is not None, n=n,
        harmful=int((large_right & ~right).sum()), helpful=int((right & ~large_right).sum()),
        drop_bound=bound if t is not None else 100 * clopper_pearson_upper(0, n, delta),
        escalation_rate=float((conf < threshold).float().mean()),
        accuracy=100 * float(right.float().mean()), large_accuracy=100 * float(large_right.float().mean()),
        small_accuracy=100 * float((small_pred == labels).float().mean()), max_drop=max_drop, delta=delta,
    )


def batched_logits(model: LoadedModel, texts: list[str], batch_size: int = 32, max_length: int = 128) -> torch.Tensor:
    """[N, C] logits of `texts`, in batches of similar length, in the texts' order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    parts = [model.predict([texts[i] for i in order[k : k + batch_size]], max_length).float()
             for k in range(0, len(texts), batch_size)]
    stacked = torch.cat(parts)
    out = torch.empty_like(stacked)
    out[torch.tensor(order)] = stacked
    return out


def calibrate(
    small: LoadedModel, large: LoadedModel, validation: TextDataset, max_drop: float, delta: float = 0.1,
    max_length: int = 128,
) -> ThresholdChoice:
    """Run both models on `validation` and choose the threshold (see `choose_threshold`)."""
    _check(max_drop, delta)
    if len(validation) == 0:
        raise UserError("The cascade's threshold needs validation examples.", "give more labelled data.")
    labels = large.manifest.labels or small.manifest.labels
    data = validation.aligned_to(labels) if labels else validation
    return choose_threshold(batched_logits(small, data.texts, max_length=max_length),
                            batched_logits(large, data.texts, max_length=max_length),
                            torch.tensor(data.labels), max_drop, delta)
