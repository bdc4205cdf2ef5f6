"""How long and how hard a training run goes."""

from __future__ import annotations

from dataclasses import dataclass

from infopt.errors import UserError

__all__ = ["FinetuneConfig"]


@dataclass(frozen=True)
class FinetuneConfig:
    """How long and how hard to train."""

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
        if self.epochs <= 0 or self.batch_size < 1 or self.lr <= 0 or not 0 <= self.warmup < 1:
            raise UserError(f"Bad fine-tuning settings {self}.", "use epochs > 0, batch_size >= 1, lr > 0.")
