"""The `infopt quantize` and `infopt prune` jobs: load a model, apply one stage with the inputs it needs, save it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infopt._atomic import check_output
from infopt.compress.prune import PruneConfig
from infopt.compress.quantize import QuantConfig
from infopt.data import DataConfig
from infopt.models import BUNDLED_MODELS, bundled_path, load_model, save_model, weights_mb
from infopt.optimize._plan import plan_evaluation
from infopt.optimize._recipes import StageInputs, apply_step

__all__ = ["PruneJob", "QuantizeJob", "run_stage_job"]


@dataclass(frozen=True)
class _StageJob:
    model: str
    """Bundled model name or model folder."""
    config: QuantConfig | PruneConfig
    """The stage's config: a quantization scheme or a pruning method, with its options."""
    output: Path
    """Folder the new model is saved to."""
    data: DataConfig | None = None
    """Calibration texts and the train split, read only if the config needs them (None: the model's own data)."""
    seed: int = 0
    """Seed of the data split they are taken from."""
    overwrite: bool = False
    """Replace an earlier infopt model in `output` (never a folder infopt did not write)."""


@dataclass(frozen=True)
class QuantizeJob(_StageJob):
    """What `infopt quantize` is asked to do."""

    config: QuantConfig
    """The scheme and its options."""


@dataclass(frozen=True)
class PruneJob(_StageJob):
    """What `infopt prune` is asked to do."""

    config: PruneConfig
    """The method and its options (recovery included)."""


def _size_mb(model: str) -> float:
    return weights_mb(bundled_path(model) if model in BUNDLED_MODELS else Path(model))


def run_stage_job(job: QuantizeJob | PruneJob) -> dict[str, Any]:
    """Check the output, load the model, read only the data the config needs, apply it, save; returns a summary."""
    check_output(job.output, "model", job.overwrite)
    model = load_model(job.model)
    needs = job.config.needs()
    inputs = StageInputs()
    if needs:
        plan = plan_evaluation(model, job.data, seed=job.seed)
        inputs = StageInputs(plan.calibration, plan.train)
    saved = save_model(apply_step(model, job.config, inputs), job.output, job.overwrite).manifest
    return {
        "name": saved.name,
        "method": saved.method,
        "format": saved.format,
        "output": str(job.output),
        "fingerprint": saved.fingerprint,
        "weights_mb": round(weights_mb(job.output), 1),
        "input_weights_mb": round(_size_mb(job.model), 1),
    }
