"""What an optimisation run is asked to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infopt.data import DataConfig
from infopt.errors import UserError
from infopt.evaluate import BenchConfig

__all__ = ["DEFAULT_MODEL", "OptimizeConfig"]

DEFAULT_MODEL = "minilm-l6-rt"


@dataclass(frozen=True)
class OptimizeConfig:
    """The model, its data, the variants to try and where the report goes."""

    model: str = DEFAULT_MODEL
    """Bundled model name or model folder."""
    data: DataConfig | None = None
    """Labelled data (classifiers) or texts (embedders, LMs); None picks the model's own default."""
    output: Path | None = None
    """Report folder; None makes a new one under ./infopt-runs/."""
    recipes: tuple[str, ...] | None = None
    """Recipe names to try (`A+B` chains them); None: the task's defaults; (): the baseline only."""
    bench: BenchConfig = field(default_factory=BenchConfig)
    """How variants are timed."""
    eval_limit: int | None = None
    """Score quality on at most this many test examples (None: the whole test split)."""
    seed: int = 0
    """Seed of data splits and calibration samples."""
    overwrite: bool = False
    """Replace an earlier infopt report in `output` (never a folder infopt did not write)."""

    def __post_init__(self) -> None:
        if self.eval_limit is not None and self.eval_limit < 10:
            raise UserError(f"eval_limit={self.eval_limit} is too small.", "use at least 10 examples.")
