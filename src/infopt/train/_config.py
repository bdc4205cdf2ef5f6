"""How long and how hard a training run goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from infopt._config import Config, check_fraction, check_int, check_number
from infopt.errors import UserError

__all__ = ["FinetuneConfig"]


@dataclass(frozen=True)
class FinetuneConfig(Config):
    """How long and how hard to train."""

    version: ClassVar[int] = 1

    epochs: float = 1.0
    """Passes over the training set (fractions allowed)."""
    batch_size: int = 32
    """Examples per optimizer step."""
    lr: float = 1e-4
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup: float = 0.06
    """Fraction of steps with a linear learning-rate warm-up."""
    max_length: int = 64
    """Tokens kept per text."""
    seed: int = 0
    """Seed of batch order and dropout."""

    def __post_init__(self) -> None:
        try:
            check_number(self, "epochs", low=0, bounds="(]", example=1.0)
            check_int(self, "batch_size", min=1)
            check_number(self, "lr", low=0, bounds="(]", example=1e-4)
            check_number(self, "weight_decay", low=0, example=0.01)
            check_fraction(self, "warmup")
            check_int(self, "max_length", min=1)
            check_int(self, "seed")
        except UserError as e:  # the field checks name the field; callers (and tests) know this prefix
            raise UserError(f"Bad fine-tuning settings: {e.problem}", e.fix) from None
