"""What an optimisation run is asked to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infopt.data import DataConfig
from infopt.errors import UserError
from infopt.evaluate import BenchConfig
from infopt.optimize._requirements import Requirements

__all__ = ["DEFAULT_MODEL", "OptimizeConfig"]

DEFAULT_MODEL = "minilm-l6-rt"


@dataclass(frozen=True)
class OptimizeConfig:
    """The model, its data, what the result must meet, the variants to try and where the report goes."""

    model: str = DEFAULT_MODEL
    """Bundled model name or model folder."""
    data: DataConfig | None = None
    """Labelled data (classifiers) or texts (embedders, LMs); None picks the model's own default."""
    output: Path | None = None
    """Report folder; None makes a new one under ./infopt-runs/."""
    recipes: tuple[str, ...] | None = None
    """Recipe names to try (`A+B` chains them), no search; None: search this machine's candidates; (): the
    baseline only."""
    bench: BenchConfig = field(default_factory=BenchConfig)
    """How variants are timed."""
    eval_limit: int | None = None
    """Score quality on at most this many test examples (None: the whole test split)."""
    seed: int = 0
    """Seed of data splits and calibration samples."""
    overwrite: bool = False
    """Replace an earlier infopt report in `output` (and an earlier export in `export`)."""
    requirements: Requirements = field(default_factory=Requirements)
    """Bounds every accepted variant meets, the priority among them and the search's time budget."""
    export: Path | None = None
    """Copy the chosen variant and its `serve.toml` into this folder (None: no export)."""
    eval_data: DataConfig | None = None
    """A separate evaluation file, scored whole (None: the test split of `data`)."""
    reuse_builds: bool = True
    """Keep variants built by recipe under $INFOPT_CACHE/builds and reuse them in later runs."""
    resume: bool = False
    """Continue the interrupted run in `output`: reuse its finished variants, redo the unfinished one."""

    def __post_init__(self) -> None:
        if self.eval_limit is not None and self.eval_limit < 10:
            raise UserError(f"eval_limit={self.eval_limit} is too small.", "use at least 10 examples.")
        if not isinstance(self.requirements, Requirements):
            raise UserError(f"OptimizeConfig.requirements is {self.requirements!r}, which is not allowed.",
                            "pass requirements= a Requirements.")
