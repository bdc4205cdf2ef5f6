"""The [rollout] table of a serve TOML (and `infopt serve --candidate DIR --share 0.1 --shadow`).

    [rollout]
    candidate = "runs/x/variants/onnx-int8"   # served beside the current model, under its name
    share = 0.1                               # of the traffic (sticky per X-User / X-Tenant / API key)
    shadow = false                            # true: the candidate gets a copy; clients get the current answer
    max_quality_drop = 0.02
    max_p95_ms = 50
    [rollout.drift]
    reference = "rotten-tomatoes"             # a validation set run through the model (else the first requests)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infopt._config import check_bool, check_int, check_number, check_type
from infopt.errors import UserError
from infopt.monitor._drift import DriftSettings
from infopt.monitor._sequential import TestBounds

__all__ = ["DriftConfig", "RolloutConfig", "default_database"]


def default_database() -> Path:
    """`cache_dir()/monitor/rollout.sqlite`."""
    from infopt.models import cache_dir

    return cache_dir() / "monitor" / "rollout.sqlite"


def _known(cls: type, table: Mapping[str, Any], where: str) -> None:
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            raise UserError(f"Unknown key {key!r} in {where}.", f"use one of {', '.join(sorted(fields))}.")


@dataclasses.dataclass(frozen=True)
class DriftConfig(DriftSettings):
    """Drift alerts on the served model (`[rollout.drift]`)."""

    enabled: bool = True
    """Track input lengths, predicted labels and confidence of the answers clients get."""
    reference: str | None = None
    """A bundled dataset or a .csv / .jsonl file whose validation split, run through the model at start, is the
    reference window (None: the first `reference_size` inputs served)."""
    reference_limit: int = 1000
    """Most texts of `reference` run through the model."""

    def __post_init__(self) -> None:
        check_int(self, "window", min=10)
        check_int(self, "reference_size", min=10)
        check_number(self, "psi_threshold", low=0, bounds="(]", example=0.25)
        check_number(self, "ks_threshold", low=0, high=1, bounds="(]", example=0.2)
        check_int(self, "check_every", min=1)
        check_bool(self, "enabled")
        if self.reference is not None and (not isinstance(self.reference, str) or not self.reference.strip()):
            raise UserError(f"DriftConfig.reference is {self.reference!r}.", "name a bundled dataset or a file.")
        check_int(self, "reference_limit", min=10)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> DriftConfig:
        _known(cls, table, "[rollout.drift]")
        return cls(**table)


@dataclasses.dataclass(frozen=True)
class RolloutConfig(TestBounds):
    """A candidate beside the current model, the traffic it gets, and the bounds it must meet (`TestBounds`)."""

    candidate: str | None = None
    """A model folder (e.g. the optimizer's export) or bundled name (None: no experiment, drift alerts only)."""
    model: str | None = None
    """The served model name the candidate shares (None: the first model)."""
    share: float = 0.1
    """Share of the traffic the candidate answers, sticky per user / tenant key (ignored with `shadow`)."""
    shadow: bool = False
    """The candidate gets a copy of every request in the background; clients always get the current answer."""
    compare: bool = True
    """Without `shadow`: the current model also runs, in the background, on the candidate's share (agreement and
    paired accuracy)."""
    min_requests: int = 200
    """Candidate requests before a promotion (a rollback may come sooner)."""
    max_duration_s: float = 7 * 86400.0
    """Seconds after which an experiment not shown good is rolled back."""
    database: str | None = None
    """The SQLite file of the rollout state and the model registry (None: the infopt cache folder)."""
    drift: DriftConfig = dataclasses.field(default_factory=DriftConfig)
    """Drift alerts ([rollout.drift])."""

    def __post_init__(self) -> None:
        check_number(self, "alpha", low=0, high=0.5, bounds="()", example=0.05)
        check_number(self, "max_quality_drop", low=0, high=1, bounds="[)", example=0.02)
        check_number(self, "max_error_rate", low=0, high=1, bounds="()", example=0.01)
        check_number(self, "max_p95_ms", low=0, bounds="()", optional=True, example=50)
        check_number(self, "min_agreement", low=0, high=1, bounds="()", optional=True, example=0.95)
        check_number(self, "quantile", low=0, high=1, bounds="()", example=0.95)
        for name in ("candidate", "model", "database"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise UserError(f"RolloutConfig.{name} is {value!r}.", f"give {name} as a non-empty string.")
        check_number(self, "share", low=0, high=1, example=0.1)
        check_bool(self, "shadow")
        check_bool(self, "compare")
        check_int(self, "min_requests", min=1)
        check_number(self, "max_duration_s", low=0, bounds="(]", example=86400)
        if isinstance(self.drift, Mapping):
            object.__setattr__(self, "drift", DriftConfig.from_table(self.drift))
        check_type(self, "drift", DriftConfig)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> RolloutConfig:
        """From the [rollout] table (unknown keys are refused)."""
        _known(cls, table, "[rollout]")
        return cls(**table)

    @property
    def mode(self) -> str:
        return "shadow" if self.shadow else "split"

    @property
    def database_path(self) -> Path:
        return Path(self.database) if self.database else default_database()
