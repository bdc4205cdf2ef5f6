"""`prune(model, config)`: one entry point for every method."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence

import torch
from torch import nn

from infopt.compress._checks import require_torch_module
from infopt.compress.prune._configs import MagnitudeConfig, PruneConfig, StructuredConfig, config_from_name
from infopt.compress.prune._recovery import recover
from infopt.compress.prune._structured import plan_counts, prune_structured
from infopt.compress.prune._unstructured import prune_unstructured
from infopt.data import TextDataset
from infopt.errors import NotApplicable
from infopt.models import LoadedModel, auto_class

__all__ = ["prune"]

STAGE = "prune"


def _check(model: LoadedModel, config: PruneConfig) -> None:
    require_torch_module(model, "prune")
    quantized = [s for s in model.manifest.recipe if s.get("stage") == "quantize"]
    if quantized:
        raise NotApplicable("The model is quantized; pruning works on float weights.",
                          "prune the float32 model first, then quantize the pruned one.")
    if isinstance(config, StructuredConfig):
        plan_counts(model.model, config)  # fail fast, before any calibration or copying


def _check_shapes(module: nn.Module, task: str) -> None:
    """The pruned tensors must be exactly what `from_config` of the pruned config builds (else loading breaks)."""
    with torch.device("meta"):
        skeleton = auto_class(task).from_config(module.config)  # type: ignore[attr-defined]
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if actual != expected:
        wrong = sorted(k for k in actual.keys() | expected.keys() if actual.get(k) != expected.get(k))
        raise RuntimeError(f"bug in infopt.compress.prune: the pruned tensors do not match the config ({wrong[:3]})")


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
    `train` gives labelled data for recovery fine-tuning and classifier Taylor scores.

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
    notes: list[str] = []
    if isinstance(config, StructuredConfig):
        module, info = prune_structured(module, model.tokenizer, model.task, config, texts, labelled)
        if config.recovery is not None:
            info["recovery"] = recover(module, source, model.tokenizer, model.task, config.recovery, train, texts)
        _check_shapes(module, model.task)
        fmt = "hf"
    else:
        assert isinstance(config, MagnitudeConfig)
        rec = config.recovery

        def between(masks: dict[nn.Parameter, torch.Tensor], share: float) -> dict[str, object]:
            assert rec is not None
            return recover(module, source, model.tokenizer, model.task, rec, train, texts, masks, share)

        info = prune_unstructured(module, model.tokenizer, config, texts, between if rec is not None else None)
        fmt = "sparse"
        notes.append(
            f"{100 * float(info['achieved_sparsity']):.0f}% of the weights of {info['pruned_linears']} Linear layers "  # type: ignore[arg-type]
            "are zero; they are stored compactly on disk (bitmask + values) but loaded as dense matrices and "
            "multiplied like any other weight, so this variant is not expected to be faster on CPU."
        )
    info["seconds"] = round(time.perf_counter() - t0, 1)
    if notes:
        info["notes"] = notes
    manifest = dataclasses.replace(
        model.manifest,
        name=f"prune-{config.method}",
        format=fmt,
        method=f"prune:{config.method}",
        parent=model.manifest.fingerprint or None,
        recipe=[*model.manifest.recipe, {"stage": STAGE, "config": config.to_dict()}],
        metrics={"prune": info},
        fingerprint="",
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    return LoadedModel(module.eval(), model.tokenizer, manifest)
