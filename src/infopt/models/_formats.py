"""The registry of model folder formats: how each one is read and written.

`models` owns `hf` and `onnx`. The compression stages add their own formats (`torch-state`, `sparse`,
`early-exit`) without `models` importing them: each is a `ModelFormat` named in the `infopt.formats` entry-point
group of pyproject.toml (a user's package can add one the same way) and loaded the first time it is needed.
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from infopt.errors import UserError
from infopt.models._loaded import LoadedModel
from infopt.models._manifest import Manifest
from infopt.models._onnx import OnnxModel
from infopt.models._tasks import auto_class

__all__ = ["ENTRY_POINT_GROUP", "LOAD_OPTIONS", "LoadOptions", "ModelFormat", "get_format", "register_format"]

ENTRY_POINT_GROUP = "infopt.formats"

Reader = Callable[[Path, PretrainedConfig, Manifest], Any]
"""(folder, its config, its manifest) -> the model object (a torch module or an OnnxModel)."""
Writer = Callable[[LoadedModel, Path], None]
"""(model, empty folder) -> writes the weights and config (the tokenizer and manifest are written for it)."""


@dataclass(frozen=True)
class ModelFormat:
    """How one `Manifest.format` is stored on disk."""

    name: str
    """The manifest's `format` value."""
    read: Reader
    """Builds the model from a folder."""
    write: Writer
    """Writes the model into a folder."""


@dataclass(frozen=True)
class LoadOptions:
    """What a reader may do beyond loading safetensors / ONNX with transformers' own classes (see `load_model`)."""

    allow_pickle: bool = False
    """Pickle weight files (pytorch_model.bin, *.pt) may be read."""
    trust_remote_code: bool = False
    """Python files of the folder named by its config's auto_map may run."""


LOAD_OPTIONS: ContextVar[LoadOptions | None] = ContextVar("infopt_load_options", default=None)
"""The options of the `load_model` call in progress (readers and nested `load_model` calls read them)."""

_FORMATS: dict[str, ModelFormat] = {}


def register_format(fmt: ModelFormat) -> ModelFormat:
    """Add (or replace) a format; returns it, so a module can write `FORMAT = register_format(ModelFormat(...))`."""
    _FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> ModelFormat:
    """The registered format `name`, loading it from its entry point on first use."""
    if name not in _FORMATS:
        for ep in md.entry_points(group=ENTRY_POINT_GROUP, name=name):
            fmt = ep.load()
            if not isinstance(fmt, ModelFormat):
                raise TypeError(f"entry point {ep.value} of {ENTRY_POINT_GROUP} is not a ModelFormat")
            register_format(fmt)
    if name not in _FORMATS:
        known = sorted({*_FORMATS, *(ep.name for ep in md.entry_points(group=ENTRY_POINT_GROUP))})
        raise UserError(
            f"The model format {name!r} is unknown to this version of infopt (known: {', '.join(known)}).",
            "re-save the model with this version of infopt, or install the package that provides the format.",
        )
    return _FORMATS[name]


def _read_hf(path: Path, config: PretrainedConfig, manifest: Manifest) -> Any:
    options = LOAD_OPTIONS.get() or LoadOptions()
    safe = any(path.glob("*.safetensors"))
    if not safe and not (options.allow_pickle and any(path.glob("*.bin"))):
        raise UserError(f"{path} has a config.json but no weights.", "copy the model's weight files into it.")
    return auto_class(manifest.task).from_pretrained(
        path, dtype=torch.float32, use_safetensors=True if safe or not options.allow_pickle else None,
        trust_remote_code=options.trust_remote_code,
    ).eval()


def _write_hf(loaded: LoadedModel, folder: Path) -> None:
    loaded.model.save_pretrained(folder, safe_serialization=True)


def _read_onnx(path: Path, config: PretrainedConfig, manifest: Manifest) -> Any:
    return OnnxModel(path / "model.onnx")


def _write_onnx(loaded: LoadedModel, folder: Path) -> None:
    model = loaded.model
    for src in [model.path, *model.path.parent.glob("model.onnx.data"), model.path.parent / "config.json"]:
        if src.exists():
            shutil.copyfile(src, folder / src.name)


register_format(ModelFormat("hf", _read_hf, _write_hf))
register_format(ModelFormat("onnx", _read_onnx, _write_onnx))
