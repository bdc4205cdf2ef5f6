"""Cascades: a small classifier answers first, a large one only the rows the small one is unsure of.

`make_cascade(small, large, threshold)` builds one; `calibrate(small, large, validation, max_drop, delta)` chooses
its threshold by risk control (a one-sided bound on the accuracy loss vs the large model); the `cascade` folder
format (`_format.py`) saves it so that `load_model` and `infopt serve` run it as one model.
"""

from infopt.compress.cascade._calibrate import (
    ESCALATE_ALL,
    THRESHOLD_GRID,
    ThresholdChoice,
    batched_logits,
    calibrate,
    choose_threshold,
    clopper_pearson_upper,
    fixed_sequence,
)
from infopt.compress.cascade._format import CASCADE, CASCADE_FILE, STAMP_FILE, make_cascade
from infopt.compress.cascade._model import CascadeModel, check_compatible, small_confidence

__all__ = [
    "CASCADE",
    "CASCADE_FILE",
    "ESCALATE_ALL",
    "STAMP_FILE",
    "THRESHOLD_GRID",
    "CascadeModel",
    "ThresholdChoice",
    "batched_logits",
    "calibrate",
    "check_compatible",
    "choose_threshold",
    "clopper_pearson_upper",
    "fixed_sequence",
    "make_cascade",
    "small_confidence",
]
