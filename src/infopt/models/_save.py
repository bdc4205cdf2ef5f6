"""Save a model variant as a folder (weights, config, tokenizer, manifest), atomically."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch

from infopt._atomic import atomic_dir
from infopt.models._loaded import LoadedModel
from infopt.models._manifest import MANIFEST_FILE, Manifest, fingerprint_folder
from infopt.models._onnx import OnnxModel

__all__ = ["save_model", "write_model"]


def write_model(loaded: LoadedModel, folder: Path) -> Manifest:
    """Write `loaded` into an existing empty folder; returns the manifest with its fingerprint."""
    loaded.tokenizer.save_pretrained(folder)
    model = loaded.model
    if isinstance(model, OnnxModel):
        for src in [model.path, *model.path.parent.glob("model.onnx.data"), model.path.parent / "config.json"]:
            if src.exists():
                shutil.copyfile(src, folder / src.name)
    elif loaded.manifest.format == "hf":
        model.save_pretrained(folder, safe_serialization=True)
    elif loaded.manifest.format == "torch-state":
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "state.pt")
    elif loaded.manifest.format == "sparse":
        from infopt.compress.prune import SPARSE_FILE, write_sparse

        model.config.save_pretrained(folder)
        write_sparse(model, folder / SPARSE_FILE)
    else:
        raise ValueError(f"unknown format {loaded.manifest.format}")
    manifest = dataclasses.replace(loaded.manifest, fingerprint=fingerprint_folder(folder))
    (folder / MANIFEST_FILE).write_text(manifest.to_json())
    return manifest


def save_model(loaded: LoadedModel, folder: str | Path) -> LoadedModel:
    """Write `loaded` to `folder` atomically; returns it with the manifest's fingerprint filled in."""
    with atomic_dir(folder) as tmp:
        manifest = write_model(loaded, tmp)
    return LoadedModel(loaded.model, loaded.tokenizer, manifest)
