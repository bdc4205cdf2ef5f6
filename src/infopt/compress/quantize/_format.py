"""The `torch-state` format: a quantized torch module saved as config + state dict, rebuilt by replaying its recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from infopt.compress.quantize._api import replay
from infopt.models import LoadedModel, Manifest, ModelFormat, auto_class

__all__ = ["STATE_FILE", "TORCH_STATE"]

STATE_FILE = "state.pt"


def _read(path: Path, config: PretrainedConfig, manifest: Manifest) -> Any:
    skeleton = auto_class(manifest.task).from_config(config, dtype=torch.float32).eval()
    model = replay(skeleton, manifest.recipe)
    model.load_state_dict(torch.load(path / STATE_FILE, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def _write(loaded: LoadedModel, folder: Path) -> None:
    loaded.model.config.save_pretrained(folder)
    torch.save(loaded.model.state_dict(), folder / STATE_FILE)


TORCH_STATE = ModelFormat("torch-state", _read, _write)
