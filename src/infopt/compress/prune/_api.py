"""`prune(model, config)`: one entry point for every method."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from infopt.compress._checks import require_torch_module
from infopt.compress.prune._configs import (
    PRUNE_METHODS,
    MagnitudeConfig,
    PruneConfig,
    RecoveryConfig,
    StructuredConfig,
    UnstructuredConfig,
    WandaConfig,
    config_from_name,
)
from infopt.compress.prune._recovery import recover
from infopt.compress.prune._structured import plan_counts, prune_structured
from infopt.compress.prune._unstructured import prune_unstructured
from infopt.data import TextDataset
from infopt.errors import NotApplicable, UserError
from infopt.models import LoadedModel, auto_class

__all__ = ["prune"]

STAGE = "prune"


def _check(model: LoadedModel, config: PruneConfig) -> None:
    require_torch_module(model, "prune")
    quantized = [s for s in model.manifest.recipe if s.get("stage") == "quantize"]
    if quantized:
        raise NotApplicable("The model is quantized; pruning works on float weights.",
                          "prune the float32 model first, then quantize the pruned one.")
    method = METHODS.get(type(config))
    if method is None:
        raise UserError(f"{type(config).__name__} is not the config of a pruning method.",
                        f"pass one of the configs of PRUNE_METHODS or a method name: {', '.join(PRUNE_METHODS)}.")
    if method.plan is not None:
        method.plan(model.model, config)  # fail fast, before any calibration or copying


def _check_shapes(module: nn.Module, task: str) -> None:
    """The pruned tensors must be exactly what `from_config` of the pruned config builds (else loading breaks)."""
    with torch.device("meta"):
        skeleton = auto_class(task).from_config(module.config)  # type: ignore[attr-defined]
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if actual != expected:
        wrong = sorted(k for k in actual.keys() | expected.keys() if actual.get(k) != expected.get(k))
        raise RuntimeError(f"bug in infopt.compress.prune: the pruned tensors do not match the config ({wrong[:3]})")


@dataclass(frozen=True)
class _Inputs:
    """What a method runs on: the model, the copy it prunes, and the data."""

    model: LoadedModel
    module: nn.Module
    texts: list[str]
    labelled: TextDataset | None
    train: TextDataset | None


Result = tuple[nn.Module, dict[str, object], str, list[str]]
"""(pruned module, info for the manifest's metrics, folder format, notes)."""


def _structured(run: _Inputs, config: StructuredConfig) -> Result:
    model = run.model
    module, info = prune_structured(run.module, model.tokenizer, model.task, config, run.texts, run.labelled)
    if config.recovery is not None:
        info["recovery"] = recover(module, model.model, model.tokenizer, model.task, config.recovery, run.train,
                                   run.texts)
    _check_shapes(module, model.task)
    return module, info, "hf", []


Between = Callable[[dict[nn.Parameter, torch.Tensor], float], dict[str, object]]
"""`between(masks, share)`: recovery fine-tuning for `share` of the epochs, the masked weights kept at zero."""


def _between(run: _Inputs, rec: RecoveryConfig) -> Between:
    """Recovery between the steps of a gradual schedule (pruned weights kept at zero)."""
    model = run.model

    def between(masks: dict[nn.Parameter, torch.Tensor], share: float) -> dict[str, object]:
        return recover(run.module, model.model, model.tokenizer, model.task, rec, run.train, run.texts, masks, share)

    return between


def _unstructured(run: _Inputs, config: UnstructuredConfig) -> Result:
    between = _between(run, config.recovery) if config.recovery is not None else None
    info = prune_unstructured(run.module, run.model.tokenizer, config, run.texts, between)
    note = (
        f"{100 * float(info['achieved_sparsity']):.0f}% of the weights of {info['pruned_linears']} Linear layers "  # type: ignore[arg-type]
        "are zero; they are stored compactly on disk (bitmask + values) but loaded as dense matrices and "
        "multiplied like any other weight, so this variant is not expected to be faster on CPU."
    )
    return run.module, info, "sparse", [note]


@dataclass(frozen=True)
class _Method:
    run: Callable[[_Inputs, Any], Result]
    """Prune `_Inputs.module` (in place or into a new module) with the config."""
    plan: Callable[[nn.Module, Any], object] | None = None
    """Check the config against the model before anything is copied or calibrated."""


METHODS: dict[type[PruneConfig], _Method] = {
    MagnitudeConfig: _Method(_unstructured),
    WandaConfig: _Method(_unstructured),
    StructuredConfig: _Method(_structured, plan=plan_counts),
}
"""The backend of each pruning method, by the exact type of its config."""


def prune(
    model: LoadedModel,
    config: PruneConfig | str,
    *,
    calibration: Sequence[str] | None = None,
    train: TextDataset | None = None,
) -> LoadedModel:
    """A new, pruned LoadedModel (the input is not modified).

    `config` is a config object (MagnitudeConfig, WandaConfig, StructuredConfig) or a method name with default
    options. `calibration` gives texts for Wanda activation norms, layer influence and (LM) Taylor scores;
    `train` gives labelled data for recovery fine-tuning and classifier Taylor scores (`config.needs()` says
    which of the two the config reads).

    Unstructured results are saved as `sparse` (bitmask + values); structured results as transformers folders
    (`hf`); BERT with heads removed becomes `PrunedBert` (see `infopt.models.modeling_pruned_bert`).
    """
    if isinstance(config, str):
        config = config_from_name(config)
    _check(model, config)
    t0 = time.perf_counter()
    source: nn.Module = model.model
    module = copy.deepcopy(source).eval()
    texts = list(calibration or (train.texts if train is not None else []))[: config.calibration_size]
    labelled = None
    if train is not None and train.labels:
        labelled = train.subset(range(min(len(train), config.calibration_size)))
    run = _Inputs(model, module, texts, labelled, train)
    module, info, fmt, notes = METHODS[type(config)].run(run, config)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    if notes:
        info["notes"] = notes
    manifest = model.manifest.derive(f"prune-{config.method}", fmt, STAGE, config.to_dict(), {"prune": info})
    return LoadedModel(module.eval(), model.tokenizer, manifest)
