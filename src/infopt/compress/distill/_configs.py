"""Settings of a distillation run, as frozen dataclasses validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

from infopt._config import (
    Config,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_type,
    int_tuple,
    number_tuple,
)
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


@dataclass(frozen=True)
class EarlyExitConfig(Config):
    """Self-distillation: exit heads on shallow layers taught by the deepest one, and the exit rule."""

    version: ClassVar[int] = 1

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
        int_tuple(self, "exit_layers", min=1, optional=True, allowed="1-based layer numbers, e.g. [1, 2, 3]")
        check_number(self, "threshold", low=0, high=1, bounds="(]", optional=True, example=0.9)
        check_number(self, "max_drop", low=0, allowed="0 or more accuracy points, e.g. 1.0")
        check_number(self, "confidence", low=0.5, high=1, bounds="[)", allowed="a number in [0.5, 1), e.g. 0.95 "
                     "(0.5: no margin)")
        check_bool(self, "freeze_backbone")
        check_number(self, "head_epochs", low=0, bounds="(]", example=4.0)
        check_number(self, "head_lr", low=0, bounds="(]", example=2e-3)


@dataclass(frozen=True)
class DistillConfig(Config):
    """How a student learns from its teacher(s): loss, knowledge kinds, scheme and budget."""

    version: ClassVar[int] = 1

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
        check_temperature(self.temperature, self)
        check_alpha(self.alpha, owner=self)
        for name in ("feature", "relation", "attention"):
            check_number(self, name, low=0, example=1.0)
        check_choice(self, "scheme", SCHEMES)
        int_tuple(self, "layer_map", min=1, optional=True, allowed="one 1-based teacher layer per student layer")
        weights = number_tuple(self, "teacher_weights", low=0, optional=True,
                               allowed="one weight >= 0 per teacher, e.g. [0.6, 0.4]")
        if weights is not None and sum(weights) <= 0:
            raise UserError("The teacher weights sum to 0.", "give at least one positive teacher weight.")
        check_type(self, "train", FinetuneConfig)
        check_int(self, "max_steps", min=1, optional=True)
        check_bool(self, "cache")
        check_type(self, "early_exit", EarlyExitConfig)

    @property
    def uses_teacher(self) -> bool:
        """Whether any term needs the teacher (alpha = 0 with no other kind is plain hard-label training)."""
        return self.alpha > 0 or self.feature > 0 or self.relation > 0 or self.attention > 0


@dataclass(frozen=True)
class StudentConfig(Config):
    """How the student is initialised before distillation."""

    version: ClassVar[int] = 1

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
        check_choice(self, "init", STUDENT_INITS)
        int_tuple(self, "layers", min=0, distinct=True, optional=True,
                  allowed="0-based teacher layer numbers, each once (no layer repeated)")
        check_int(self, "num_layers", min=1, optional=True)
