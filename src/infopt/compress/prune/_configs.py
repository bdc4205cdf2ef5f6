"""One frozen config dataclass per pruning method, validated on construction, JSON-round-trippable."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from infopt.errors import UserError

__all__ = [
    "PRUNE_METHODS",
    "MagnitudeConfig",
    "PruneConfig",
    "RecoveryConfig",
    "StructuredConfig",
    "WandaConfig",
    "config_from_dict",
    "config_from_name",
]

SCOPES = ("layer", "row", "global")
IMPORTANCES = ("magnitude", "taylor")


def _bad(owner: object, field: str, value: object, allowed: str) -> UserError:
    return UserError(
        f"{type(owner).__name__}.{field} is {value!r}, which is not allowed.", f"pass {field}= {allowed}."
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fraction(owner: object, field: str) -> None:
    value = getattr(owner, field)
    if not _is_number(value) or not 0 <= value < 1:
        raise _bad(owner, field, value, "a fraction in [0, 1), e.g. 0.5")


def _positive_int(owner: object, field: str, minimum: int = 1) -> None:
    value = getattr(owner, field)
    if not _is_int(value) or value < minimum:
        raise _bad(owner, field, value, f"an integer >= {minimum}")


def _as_str_tuple(owner: object, field: str) -> None:
    value = getattr(owner, field)
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise _bad(owner, field, value, "a list of strings")
    object.__setattr__(owner, field, tuple(value))


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
class RecoveryConfig:
    """A short fine-tune after pruning, learning from the labels and (optionally) from the unpruned model."""

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
        if not _is_number(self.epochs) or self.epochs <= 0:
            raise _bad(self, "epochs", self.epochs, "a number > 0, e.g. 0.33")
        if not _is_number(self.lr) or self.lr <= 0:
            raise _bad(self, "lr", self.lr, "a number > 0, e.g. 1e-4")
        _positive_int(self, "batch_size")
        _positive_int(self, "max_length", 2)
        if not isinstance(self.distill, bool):
            raise _bad(self, "distill", self.distill, "True or False")
        if not _is_number(self.temperature) or self.temperature <= 0:
            raise _bad(self, "temperature", self.temperature, "a number > 0, e.g. 4.0")
        if not _is_number(self.alpha) or not 0 <= self.alpha <= 1:
            raise _bad(self, "alpha", self.alpha, "a number in [0, 1]")
        if not _is_int(self.seed):
            raise _bad(self, "seed", self.seed, "an integer")


@dataclass(frozen=True)
class PruneConfig:
    """Fields every method has. Subclasses set `method` and add their own fields."""

    method: ClassVar[str] = ""

    exclude: tuple[str, ...] = ()
    """fnmatch patterns of Linear names left alone (embeddings, pooler and task head are never pruned)."""
    recovery: RecoveryConfig | None = None
    """Fine-tune after pruning (and between the steps of a gradual schedule); None: no fine-tuning."""
    calibration_size: int = 64
    """Calibration texts used for activation norms, Taylor gradients and layer influence."""
    calibration_length: int = 128
    """Tokens kept per calibration text."""

    def __post_init__(self) -> None:
        _as_str_tuple(self, "exclude")
        if self.recovery is not None and not isinstance(self.recovery, RecoveryConfig):
            raise _bad(self, "recovery", self.recovery, "a RecoveryConfig or None")
        _positive_int(self, "calibration_size")
        _positive_int(self, "calibration_length", 2)

    def to_dict(self) -> dict[str, Any]:
        """`{"method": ..., **fields}`, as stored in a manifest's recipe."""
        out: dict[str, Any] = {"method": self.method}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, RecoveryConfig):
                value = dataclasses.asdict(value)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class MagnitudeConfig(PruneConfig):
    """Unstructured pruning: zero the weights of smallest |w| in every Linear of the transformer blocks."""

    method: ClassVar[str] = "magnitude"

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
        _fraction(self, "sparsity")
        if self.scope not in SCOPES:
            raise _bad(self, "scope", self.scope, " or ".join(map(repr, SCOPES)))
        _positive_int(self, "steps")
        if self.steps > 1 and self.recovery is None:
            raise UserError(
                f"A gradual schedule (steps={self.steps}) fine-tunes between steps, but no recovery was configured.",
                "pass recovery=RecoveryConfig(...) (CLI: --recover-epochs), or steps=1.",
            )
        if self.pattern is not None:
            if not isinstance(self.pattern, str):
                raise _bad(self, "pattern", self.pattern, "a string such as '2:4', or None")
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


@dataclass(frozen=True)
class WandaConfig(MagnitudeConfig):
    """Wanda (Sun et al. 2023): score |w| x the L2 norm of its input activation over calibration texts."""

    method: ClassVar[str] = "wanda"

    scope: str = "row"
    """Where weights compete: `row` (each output row, as in the paper), `layer` or `global`."""


@dataclass(frozen=True)
class StructuredConfig(PruneConfig):
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
        _fraction(self, "heads")
        _fraction(self, "ffn")
        if isinstance(self.layers, Sequence) and not isinstance(self.layers, str):
            if not all(_is_int(i) and i >= 0 for i in self.layers) or len(set(self.layers)) != len(self.layers):
                raise _bad(self, "layers", self.layers, "distinct layer indices >= 0, or a count")
            object.__setattr__(self, "layers", tuple(sorted(self.layers)))
        elif not _is_int(self.layers) or self.layers < 0:  # type: ignore[operator]
            raise _bad(self, "layers", self.layers, "a count >= 0 or a list of layer indices")
        if self.importance not in IMPORTANCES:
            raise _bad(self, "importance", self.importance, " or ".join(map(repr, IMPORTANCES)))


PRUNE_METHODS: dict[str, PruneConfig] = {c.method: c() for c in (MagnitudeConfig, WandaConfig, StructuredConfig)}
"""Method name -> its default config."""


def config_from_name(method: str, **overrides: Any) -> PruneConfig:
    """The default config of `method` with some fields replaced; InfoptError for unknown methods or fields."""
    if method not in PRUNE_METHODS:
        raise UserError(f"Unknown pruning method {method!r}.", f"use one of: {', '.join(PRUNE_METHODS)}.")
    default = PRUNE_METHODS[method]
    known = [f.name for f in fields(default)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise UserError(
            f"Pruning method {method!r} has no option {', '.join(unknown)}.", f"use only {', '.join(known)}."
        )
    if isinstance(overrides.get("recovery"), dict):
        overrides["recovery"] = RecoveryConfig(**overrides["recovery"])
    return dataclasses.replace(default, **overrides)


def config_from_dict(data: dict[str, Any]) -> PruneConfig:
    """Inverse of `PruneConfig.to_dict` (as read back from a manifest recipe)."""
    rest = dict(data)
    method = rest.pop("method", None)
    if not isinstance(method, str):
        raise UserError(f"A prune step in the recipe has no method ({data!r}).", "re-create the model.")
    return config_from_name(method, **rest)
