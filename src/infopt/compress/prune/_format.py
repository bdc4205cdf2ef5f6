"""The `sparse` format: a pruned model's config plus `sparse.safetensors` (bitmask + values), loaded dense."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from infopt.compress.prune._sparse_format import SPARSE_FILE, read_sparse, write_sparse
from infopt.models import LoadedModel, Manifest, ModelFormat, auto_class

__all__ = ["SPARSE"]


def _read(path: Path, config: PretrainedConfig, manifest: Manifest) -> Any:
    model = auto_class(manifest.task).from_config(config, dtype=torch.float32).eval()
    model.load_state_dict(read_sparse(path / SPARSE_FILE), strict=True)
    return model.eval()


def _write(loaded: LoadedModel, folder: Path) -> None:
    loaded.model.config.save_pretrained(folder)
    write_sparse(loaded.model, folder / SPARSE_FILE)


SPARSE = ModelFormat("sparse", _read, _write)
