"""Settings of a distillation run, as frozen dataclasses validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from infopt.compress.distill._loss import check_alpha, check_temperature
from infopt.errors import UserError
from infopt.train import FinetuneConfig

__all__ = ["SCHEMES", "STUDENT_INITS", "DistillConfig", "EarlyExitConfig", "Scheme", "StudentConfig", "StudentInit"]

Scheme = Literal["offline", "online", "self"]
SCHEMES: tuple[str, ...] = get_args(Scheme)
StudentInit = Literal["teacher-layers", "pretrained", "random"]
STUDENT_INITS: tuple[str, ...] = get_args(StudentInit)

DISTILL_TRAIN = FinetuneConfig(epochs=1.0, batch_size=32, lr=1e-4, max_length=64, seed=0)
"""The default training budget: one epoch, batch 32, AdamW 1e-4, 64 tokens (as the default teacher's)."""


def _weight(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise UserError(f"The {name} weight must be a finite number >= 0, got {value!r}.", f"pass {name}=0 or more.")


@dataclass(frozen=True)
class EarlyExitConfig:
    """Self-distillation: exit heads on shallow layers taught by the deepest one, and the exit rule."""

    exit_layers: tuple[int, ...] | None = None
    """Layers (1-based) followed by an exit head; None: every layer but the last."""
    threshold: float | None = None
    """Exit at the first head whose top probability reaches this; None: chosen on validation data."""
    max_drop: float = 1.0
    """When choosing the threshold: accuracy points the early-exit model may lose against the full model."""
    confidence: float = 0.95
    """One-sided confidence that the drop stays within max_drop (paired normal bound on validation; 0.5 trusts
    the point estimate, which overfits a small validation set)."""
    freeze_backbone: bool = True
    """Train only the exit heads (the full model stays bit-identical); False trains everything jointly."""
    head_epochs: float = 4.0
    """Passes over the training data for the exit heads when the backbone is frozen."""
    head_lr: float = 2e-3
    """Learning rate of the exit heads when the backbone is frozen."""

    def __post_init__(self) -> None:
        if self.exit_layers is not None and (not self.exit_layers or any(i < 1 for i in self.exit_layers)):
            raise UserError(f"Bad exit layers {self.exit_layers}.", "give 1-based layer numbers, e.g. (1, 2, 3).")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise UserError(f"Exit threshold {self.threshold} is not in (0, 1].", "pass e.g. 0.9, or None.")
        if not (math.isfinite(self.max_drop) and self.max_drop >= 0):
            raise UserError(f"max_drop={self.max_drop} is invalid.", "allow 0 or more accuracy points.")
        if not 0.5 <= self.confidence < 1.0:
            raise UserError(f"confidence={self.confidence} is not in [0.5, 1).", "use e.g. 0.95 (0.5: no margin).")
        if self.head_epochs <= 0 or self.head_lr <= 0:
            raise UserError("Exit-head training needs head_epochs > 0 and head_lr > 0.", "use positive values.")


@dataclass(frozen=True)
class DistillConfig:
    """How a student learns from its teacher(s): loss, knowledge kinds, scheme and budget."""

    temperature: float = 4.0
    """Softmax temperature T of the soft targets (T > 0); the KL term is scaled by T^2."""
    alpha: float = 0.5
    """Weight of the soft-target term; 1 - alpha weighs the hard-label cross-entropy (0 = labels only)."""
    feature: float = 0.0
    """Weight of feature-based KD: projected student hidden states vs the teacher's, per mapped layer."""
    relation: float = 0.0
    """Weight of relation-based KD: distances and angles between the examples of a batch (RKD)."""
    attention: float = 0.0
    """Weight of attention transfer: KL between head-averaged attention maps, per mapped layer."""
    layer_map: tuple[int, ...] | None = None
    """Teacher layer (1-based) matched by each student layer; None: the layers it was cut from, else uniform."""
    scheme: Scheme = "offline"
    """offline: teacher outputs cached on disk once; online: teacher and student learn together; self: early exit."""
    teacher_weights: tuple[float, ...] | None = None
    """Multi-teacher: weight of each teacher's soft targets (normalised); None: equal weights."""
    train: FinetuneConfig = field(default_factory=lambda: DISTILL_TRAIN)
    """Training budget (epochs, batch size, learning rate, max_length, seed)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides train.epochs); the budget of causal-LM runs."""
    cache: bool = True
    """offline: keep teacher outputs on disk under the infopt cache (False: in memory for this run only)."""
    early_exit: EarlyExitConfig = field(default_factory=EarlyExitConfig)
    """Settings of the self-distillation scheme."""

    def __post_init__(self) -> None:
        check_temperature(self.temperature)
        check_alpha(self.alpha)
        for name in ("feature", "relation", "attention"):
            _weight(name, getattr(self, name))
        if self.scheme not in SCHEMES:
            raise UserError(f"Unknown distillation scheme {self.scheme!r}.", f"use one of {', '.join(SCHEMES)}.")
        if self.layer_map is not None and (not self.layer_map or any(j < 1 for j in self.layer_map)):
            raise UserError(f"Bad layer map {self.layer_map}.", "give one 1-based teacher layer per student layer.")
        if self.teacher_weights is not None:
            for w in self.teacher_weights:
                _weight("teacher", w)
            if sum(self.teacher_weights) <= 0:
                raise UserError("The teacher weights sum to 0.", "give at least one positive teacher weight.")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"max_steps={self.max_steps} is invalid.", "use 1 or more steps, or None.")

    @property
    def uses_teacher(self) -> bool:
        """Whether any term needs the teacher (alpha = 0 with no other kind is plain hard-label training)."""
        return self.alpha > 0 or self.feature > 0 or self.relation > 0 or self.attention > 0


@dataclass(frozen=True)
class StudentConfig:
    """How the student is initialised before distillation."""

    init: StudentInit = "teacher-layers"
    """teacher-layers: copy of the teacher keeping some layers (DistilBERT-style); pretrained: a smaller
    pretrained model; random: the teacher's architecture with fewer layers and random weights."""
    layers: tuple[int, ...] | None = None
    """teacher-layers: the teacher layers (0-based) to keep; None: `num_layers` evenly spaced, first and last kept."""
    num_layers: int | None = None
    """Student depth for teacher-layers / random; None: half the teacher's (every other layer)."""
    pretrained: str = "minilm-l3"
    """pretrained: bundled name or folder of the model to start from (a new classification head is added)."""
    name: str | None = None
    """Name of the student in its manifest; None: derived from the teacher's."""

    def __post_init__(self) -> None:
        if self.init not in STUDENT_INITS:
            raise UserError(f"Unknown student init {self.init!r}.", f"use one of {', '.join(STUDENT_INITS)}.")
        if self.layers is not None and (not self.layers or any(i < 0 for i in self.layers)):
            raise UserError(f"Bad student layers {self.layers}.", "give 0-based teacher layer numbers.")
        if self.layers is not None and len(set(self.layers)) != len(self.layers):
            raise UserError(f"Student layers {self.layers} repeat a layer.", "give each teacher layer once.")
        if self.num_layers is not None and self.num_layers < 1:
            raise UserError(f"num_layers={self.num_layers} is invalid.", "use 1 or more layers.")
