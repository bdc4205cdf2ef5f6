"""One frozen config dataclass per pruning method, validated on construction, JSON-round-trippable.

The method configs are flat: each lists all of its fields and none inherits from another, so code picks a backend
by the exact type of the config (see `_api.py`). `PruneConfig` is only their common base (no fields).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from infopt import _config
from infopt._config import (
    CALIBRATION,
    TRAIN,
    Config,
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_type,
    field_error,
    int_tuple,
    str_tuple,
)
from infopt.errors import UserError

__all__ = [
    "PRUNE_METHODS",
    "MagnitudeConfig",
    "PruneConfig",
    "RecoveryConfig",
    "StructuredConfig",
    "UnstructuredConfig",
    "WandaConfig",
    "config_from_dict",
    "config_from_name",
]

SCOPES = ("layer", "row", "global")
IMPORTANCES = ("magnitude", "taylor")


def parse_pattern(pattern: str) -> tuple[int, int]:
    """`"2:4"` -> (2, 4): keep N weights in every group of M consecutive inputs."""
    try:
        n, m = (int(p) for p in pattern.split(":"))
    except ValueError:
        n, m = 0, 0
    if not 0 < n < m:
        raise UserError(f"Sparsity pattern {pattern!r} is not of the form N:M with 0 < N < M.", "use e.g. 2:4.")
    return n, m


@dataclass(frozen=True)
class RecoveryConfig(Config):
    """A short fine-tune after pruning, learning from the labels and (optionally) from the unpruned model."""

    version: ClassVar[int] = 1

    epochs: float = 1 / 3
    """Passes over the training data (fractions allowed); split evenly over the steps of a gradual schedule."""
    lr: float = 1e-4
    """Peak learning rate of AdamW (linear warm-up and decay)."""
    batch_size: int = 32
    """Examples (classifiers) or token blocks (causal LMs) per optimizer step."""
    max_length: int = 64
    """Tokens per text (classifiers) or per block (causal LMs)."""
    distill: bool = True
    """Distil from the unpruned model's logits (infopt.compress.distill) as well as the labels; plain
    fine-tuning when the distillation module is not installed."""
    temperature: float = 4.0
    """Softmax temperature of the distillation term."""
    alpha: float = 0.5
    """Weight of the distillation term (1 - alpha goes to the labels)."""
    seed: int = 0
    """Seed of batch order and dropout."""

    def __post_init__(self) -> None:
        check_number(self, "epochs", low=0, bounds="(]", example=0.33)
        check_number(self, "lr", low=0, bounds="(]", example=1e-4)
        check_int(self, "batch_size", min=1)
        check_int(self, "max_length", min=2)
        check_bool(self, "distill")
        check_number(self, "temperature", low=0, bounds="(]", example=4.0)
        check_number(self, "alpha", low=0, high=1)
        check_int(self, "seed")


class PruneConfig(Config):
    """Base of the method configs: the ClassVars `method` and `version`, `to_dict` and `needs`; no fields.

    Every method has the fields `exclude`, `recovery`, `calibration_size` and `calibration_length`.
    """

    method: ClassVar[str] = ""
    version: ClassVar[int] = 1
    name_field: ClassVar[str] = "method"

    if TYPE_CHECKING:

        @property
        def exclude(self) -> tuple[str, ...]:
            """fnmatch patterns of Linear names left alone."""
            ...

        @property
        def recovery(self) -> RecoveryConfig | None:
            """Fine-tune after pruning; None: no fine-tuning."""
            ...

        @property
        def calibration_size(self) -> int:
            """Calibration texts used."""
            ...

        @property
        def calibration_length(self) -> int:
            """Tokens kept per calibration text."""
            ...

    def needs(self) -> frozenset[str]:
        """What `prune` must be given besides the model: "calibration" (texts, `calibration=`) and / or "train"
        (the train split, `train=`; labelled for classifiers). Every method defines it."""
        raise NotImplementedError(f"{type(self).__name__}.needs")


# --- field groups: fields and checks that several methods share (not configs: nothing dispatches on them) ------

@dataclass(frozen=True)
class _CommonFields:
    exclude: tuple[str, ...] = ()
    """fnmatch patterns of Linear names left alone (embeddings, pooler and task head are never pruned)."""
    recovery: RecoveryConfig | None = None
    """Fine-tune after pruning (and between the steps of a gradual schedule); None: no fine-tuning."""
    calibration_size: int = 64
    """Calibration texts used (activation norms, Taylor gradients, layer influence; magnitude reads none)."""
    calibration_length: int = 128
    """Tokens kept per calibration text."""

    def __post_init__(self) -> None:
        str_tuple(self, "exclude")
        check_type(self, "recovery", RecoveryConfig, optional=True)
        check_int(self, "calibration_size", min=1)
        check_int(self, "calibration_length", min=2)


@dataclass(frozen=True)
class _UnstructuredFields(_CommonFields):
    sparsity: float = 0.5
    """Fraction of the weights of the pruned Linear layers set to zero, in [0, 1)."""
    scope: str = "layer"
    """Where weights compete: `layer` (each matrix), `row` (each output row) or `global` (all matrices)."""
    pattern: str | None = None
    """Semi-structured N:M sparsity, e.g. `2:4` (keep 2 of every 4 consecutive inputs); sparsity must be 1 - N/M."""
    steps: int = 1
    """Gradual schedule: reach `sparsity` in this many steps (cubic), with recovery fine-tuning between them."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fraction(self, "sparsity")
        check_choice(self, "scope", SCOPES)
        check_int(self, "steps", min=1)
        if self.steps > 1 and self.recovery is None:
            raise UserError(
                f"A gradual schedule (steps={self.steps}) fine-tunes between steps, but no recovery was configured.",
                "pass recovery=RecoveryConfig(...) (CLI: --recover-epochs), or steps=1.",
            )
        if self.pattern is not None:
            if not isinstance(self.pattern, str):
                raise field_error(self, "pattern", self.pattern, "a string such as '2:4', or None")
            n, m = parse_pattern(self.pattern)
            if not math.isclose(self.sparsity, 1 - n / m):
                raise UserError(
                    f"Pattern {self.pattern} gives sparsity {1 - n / m:g}, but sparsity={self.sparsity:g} was asked.",
                    f"pass sparsity={1 - n / m:g} with pattern {self.pattern}, or drop the pattern.",
                )
            if self.steps != 1 or self.scope == "global":
                raise UserError(
                    f"Pattern {self.pattern} is applied in one step within each row.", "use steps=1 and scope='layer'."
                )


# --- the methods: each its own class, chosen by exact type -------------------------------------------------------

@dataclass(frozen=True)
class MagnitudeConfig(_UnstructuredFields, PruneConfig):
    """Unstructured pruning: zero the weights of smallest |w| in every Linear of the transformer blocks."""

    method: ClassVar[str] = "magnitude"

    def needs(self) -> frozenset[str]:
        """{"train"} with recovery, else nothing."""
        return frozenset({TRAIN}) if self.recovery is not None else frozenset()


@dataclass(frozen=True)
class WandaConfig(_UnstructuredFields, PruneConfig):
    """Wanda (Sun et al. 2023): score |w| x the L2 norm of its input activation over calibration texts."""

    method: ClassVar[str] = "wanda"

    scope: str = "row"
    """Where weights compete: `row` (each output row, as in the paper), `layer` or `global`."""

    def needs(self) -> frozenset[str]:
        """{"calibration"} (activation norms), plus "train" with recovery."""
        return frozenset({CALIBRATION, TRAIN} if self.recovery is not None else {CALIBRATION})


UnstructuredConfig = MagnitudeConfig | WandaConfig
"""The configs of the unstructured methods (a type alias, usable with isinstance)."""


@dataclass(frozen=True)
class StructuredConfig(_CommonFields, PruneConfig):
    """Remove attention heads, FFN neurons and whole layers; the result is a smaller dense model."""

    method: ClassVar[str] = "structured"

    heads: float = 0.0
    """Fraction of attention heads removed from every layer (for grouped-query attention: of KV groups)."""
    ffn: float = 0.0
    """Fraction of FFN (intermediate) neurons removed from every layer."""
    layers: int | tuple[int, ...] = 0
    """Whole layers removed: a count (the least influential on calibration texts) or explicit indices."""
    importance: str = "magnitude"
    """Ranks heads and neurons: `magnitude` (L2 norm of their weights) or `taylor` (|sum of grad x weight| over
    their weights, on labelled calibration data or the LM loss)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fraction(self, "heads")
        check_fraction(self, "ffn")
        if isinstance(self.layers, list | tuple):
            int_tuple(self, "layers", min=0, distinct=True, sort=True,
                      allowed="distinct layer indices >= 0, or a count")
        else:
            check_int(self, "layers", min=0, allowed="a count >= 0 or a list of layer indices")
        check_choice(self, "importance", IMPORTANCES)

    def needs(self) -> frozenset[str]:
        """Calibration texts to rank by Taylor scores (classifiers: on the labelled train split, so "train" too)
        or to choose layers by influence (`layers` a count > 0); "train" with recovery."""
        out: set[str] = set()
        if self.importance == "taylor":
            out |= {CALIBRATION, TRAIN}
        if isinstance(self.layers, int) and self.layers > 0:
            out.add(CALIBRATION)
        if self.recovery is not None:
            out.add(TRAIN)
        return frozenset(out)


PRUNE_METHODS: dict[str, PruneConfig] = {c.method: c() for c in (MagnitudeConfig, WandaConfig, StructuredConfig)}
"""Method name -> its default config."""


def config_from_name(method: str, **overrides: Any) -> PruneConfig:
    """The default config of `method` with some fields replaced (`recovery` may be a dict); UserError for unknown
    methods or fields. A `pattern` N:M given without a `sparsity` sets the sparsity it implies, 1 - N/M."""
    if isinstance(overrides.get("pattern"), str) and "sparsity" not in overrides:
        n, m = parse_pattern(overrides["pattern"])
        overrides = {**overrides, "sparsity": 1 - n / m}
    return _config.config_from_name(PRUNE_METHODS, method, overrides, what="pruning method")


def config_from_dict(data: dict[str, Any]) -> PruneConfig:
    """Inverse of `PruneConfig.to_dict` (as read back from a manifest recipe, with or without `version`)."""
    return _config.config_from_dict(PRUNE_METHODS, data, what="pruning method")
