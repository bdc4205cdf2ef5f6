"""Save a model variant as a folder (weights, config, tokenizer, manifest), atomically."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch

from infopt._atomic import atomic_dir
from infopt.models._loaded import LoadedModel
from infopt.models._manifest import MANIFEST_FILE, fingerprint_folder
from infopt.models._onnx import OnnxModel

__all__ = ["save_model"]


def save_model(loaded: LoadedModel, folder: str | Path) -> LoadedModel:
    """Write `loaded` to `folder`; returns it with the manifest's fingerprint filled in."""
    with atomic_dir(folder) as tmp:
        loaded.tokenizer.save_pretrained(tmp)
        fmt = loaded.manifest.format
        model = loaded.model
        if isinstance(model, OnnxModel):
            shutil.copyfile(model.path, tmp / "model.onnx")
            for extra in model.path.parent.glob("model.onnx.data"):
                shutil.copyfile(extra, tmp / extra.name)
            if (model.path.parent / "config.json").exists():
                shutil.copyfile(model.path.parent / "config.json", tmp / "config.json")
        elif fmt == "hf":
            model.save_pretrained(tmp, safe_serialization=True)
        elif fmt == "torch-state":
            model.config.save_pretrained(tmp)
            torch.save(model.state_dict(), tmp / "state.pt")
        else:
            raise ValueError(f"unknown format {fmt}")
        manifest = dataclasses.replace(loaded.manifest, fingerprint=fingerprint_folder(tmp))
        (tmp / MANIFEST_FILE).write_text(manifest.to_json())
    return LoadedModel(model, loaded.tokenizer, manifest)
