"""Save a model variant as a folder (weights, config, tokenizer, manifest), atomically."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from infopt._atomic import atomic_dir
from infopt.models._formats import get_format
from infopt.models._loaded import LoadedModel
from infopt.models._manifest import MANIFEST_FILE, Manifest, fingerprint_folder

__all__ = ["save_model", "write_model"]


def write_model(loaded: LoadedModel, folder: Path) -> Manifest:
    """Write `loaded` into an existing empty folder in its manifest's format; returns the manifest, fingerprinted."""
    loaded.tokenizer.save_pretrained(folder)
    get_format(loaded.manifest.format).write(loaded, folder)
    manifest = dataclasses.replace(loaded.manifest, fingerprint=fingerprint_folder(folder))
    (folder / MANIFEST_FILE).write_text(manifest.to_json())
    return manifest


def save_model(loaded: LoadedModel, folder: str | Path, overwrite: bool = False) -> LoadedModel:
    """Write `loaded` to `folder` atomically; returns it with the manifest's fingerprint filled in.

    An existing `folder` is replaced only if it is an earlier infopt model folder and `overwrite` is set
    (see `infopt._atomic.check_output`).
    """
    with atomic_dir(folder, "model", overwrite) as tmp:
        manifest = write_model(loaded, tmp)
    return LoadedModel(loaded.model, loaded.tokenizer, manifest)
