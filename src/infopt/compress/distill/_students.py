"""Students: a copy of the teacher keeping some of its layers, a smaller pretrained model, or random weights."""

from __future__ import annotations

import copy
from typing import Any, cast

import torch

from infopt.compress.distill._configs import StudentConfig
from infopt.errors import NotApplicable, UserError
from infopt.models import (
    LoadedModel,
    Manifest,
    auto_class,
    base_of,
    block_path,
    load_model,
    new_classifier,
    set_submodule,
)

__all__ = ["cut_layers", "evenly_spaced", "layer_list", "make_student", "num_layers", "student_layers"]


def _layer_path(model: torch.nn.Module) -> str:
    """Where the transformer blocks sit inside `base_of(model)`."""
    path = block_path(model)
    if path is None:
        raise UserError(
            f"Cannot find the transformer layers of {type(model).__name__}.",
            "distil a BERT-like encoder or a Llama-like causal LM, or give a ready-made student model.",
        )
    return path


def layer_list(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The ModuleList holding the model's transformer blocks."""
    return cast(torch.nn.ModuleList, base_of(model).get_submodule(_layer_path(model)))  # block_path checked it


def num_layers(model: torch.nn.Module) -> int:
    return len(layer_list(model))


def evenly_spaced(total: int, keep: int) -> tuple[int, ...]:
    """`keep` of `total` layers (0-based), evenly spaced, always the first and the last: 6 -> 3 gives (0, 2, 5)."""
    if not 1 <= keep <= total:
        raise UserError(f"Cannot keep {keep} of {total} layers.", f"keep between 1 and {total} layers.")
    if keep == 1:
        return (total - 1,)
    return tuple(round(i * (total - 1) / (keep - 1)) for i in range(keep))


def cut_layers(model: torch.nn.Module, keep: tuple[int, ...]) -> torch.nn.Module:
    """A deep copy of `model` with only the transformer layers `keep` (0-based, in that order)."""
    total = num_layers(model)
    bad = [i for i in keep if not 0 <= i < total]
    if bad or not keep:
        raise UserError(f"Layers {bad or keep} do not exist in a {total}-layer model.", f"use 0..{total - 1}.")
    # One deepcopy of the whole model keeps every module pointing at the same (copied) config object.
    student = copy.deepcopy(model)
    old = layer_list(student)
    set_submodule(base_of(student), _layer_path(student), torch.nn.ModuleList(old[i] for i in keep))
    for new_idx, layer in enumerate(layer_list(student)):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                setattr(module, "layer_idx", new_idx)  # noqa: B010  (KV-cache slot of decoder attention)
    cfg: Any = student.config
    cfg.num_hidden_layers = len(keep)
    if isinstance(getattr(cfg, "layer_types", None), list | tuple):
        cfg.layer_types = [cfg.layer_types[i] for i in keep]
    return student


def student_layers(student: LoadedModel) -> tuple[int, ...] | None:
    """The teacher layers (0-based) a student was cut from, if it was built by `make_student` from teacher layers."""
    for step in reversed(student.manifest.recipe):
        if step.get("stage") == "student":
            config = step.get("config", {})
            return tuple(config["layers"]) if config.get("init") == "teacher-layers" else None
    return None


def _from_pretrained(teacher: LoadedModel, config: StudentConfig) -> tuple[torch.nn.Module, Any]:
    base = load_model(config.pretrained)
    if base.task == "causal-lm" or teacher.task == "causal-lm":
        if base.task != teacher.task:
            raise UserError(
                f"The pretrained student {config.pretrained} is a {base.task} model, the teacher a {teacher.task}.",
                "start from a pretrained model of the same task.",
            )
        return base.model, base.tokenizer
    labels = teacher.manifest.labels
    folder = _folder_of(config.pretrained)
    return new_classifier(folder, labels), base.tokenizer


def _folder_of(name_or_path: str) -> str:
    from infopt.models import BUNDLED_MODELS, bundled_path

    return str(bundled_path(name_or_path)) if name_or_path in BUNDLED_MODELS else name_or_path


def make_student(teacher: LoadedModel, config: StudentConfig | None = None) -> LoadedModel:
    """An untrained student for `teacher` (classifier or causal LM), with the teacher's labels and a manifest."""
    if not isinstance(teacher.model, torch.nn.Module):
        raise NotApplicable("The teacher is not a PyTorch model (ONNX?).", "distil from the PyTorch teacher.")
    config = config or StudentConfig()
    total = num_layers(teacher.model)
    recipe: dict[str, Any] = {"init": config.init}
    tokenizer = teacher.tokenizer
    if config.init == "pretrained":
        model, tokenizer = _from_pretrained(teacher, config)
        recipe["pretrained"] = config.pretrained
        depth = num_layers(model)
    else:
        keep = config.layers or evenly_spaced(total, config.num_layers or max(1, total // 2))
        if config.init == "teacher-layers":
            model = cut_layers(teacher.model, keep)
            recipe["layers"] = list(keep)
        else:
            cfg: Any = copy.deepcopy(teacher.model.config)
            cfg.num_hidden_layers = len(keep)
            if isinstance(getattr(cfg, "layer_types", None), list | tuple):
                cfg.layer_types = [cfg.layer_types[i] for i in keep]
            with torch.random.fork_rng():
                torch.manual_seed(0)
                model = auto_class(teacher.task).from_config(cfg, dtype=torch.float32)
        depth = len(keep)
    model.eval()
    name = config.name or f"{teacher.manifest.name}-l{depth}"
    recipe["num_layers"] = depth
    manifest = Manifest(
        name=name,
        task=teacher.manifest.task,
        method=f"student:{config.init}",
        parent=teacher.manifest.fingerprint or None,
        labels=list(teacher.manifest.labels),
        recipe=[*teacher.manifest.recipe, {"stage": "student", "config": recipe}],  # history: teacher's steps first
    )
    return LoadedModel(model, tokenizer, manifest)
