"""The `early-exit` format: the backbone as a Hugging Face folder plus the exit heads in `exits.safetensors`.

`load_model` on such a folder gives the `EarlyExitClassifier` (exits and threshold applied), so `infopt bench`,
`optimize` and `serve` measure and run what it is, not its backbone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from transformers import PretrainedConfig

from infopt.compress.distill._early_exit import EXITS_FILE, EarlyExitClassifier, new_heads
from infopt.errors import UserError
from infopt.models import LoadedModel, Manifest, ModelFormat, get_format

__all__ = ["EARLY_EXIT"]


def _exit_recipe(manifest: Manifest) -> dict[str, Any]:
    for step in reversed(manifest.recipe):
        if step.get("stage") == "early-exit":
            return dict(step["config"])
    raise UserError("The manifest of an early-exit model has no early-exit step.", "re-create the model.")


def _read(path: Path, config: PretrainedConfig, manifest: Manifest) -> Any:
    recipe = _exit_recipe(manifest)
    base = get_format("hf").read(path, config, manifest)
    layers = tuple(int(k) for k in recipe["exit_layers"])
    heads = new_heads(base.config.hidden_size, base.config.num_labels, layers, 0)
    try:
        heads.load_state_dict(load_file(path / EXITS_FILE), strict=True)
    except Exception as e:  # a missing, truncated or foreign file surfaces as several exception types
        raise UserError(
            f"{path / EXITS_FILE} cannot be loaded ({type(e).__name__}).", "re-save the early-exit model."
        ) from None
    return EarlyExitClassifier(base, layers, float(recipe["threshold"]), heads).eval()


def _write(loaded: LoadedModel, folder: Path) -> None:
    ee = loaded.model
    if not isinstance(ee, EarlyExitClassifier):
        raise TypeError(f"the early-exit format stores an EarlyExitClassifier, got {type(ee).__name__}")
    save_file({k: v.contiguous() for k, v in ee.heads.state_dict().items()}, folder / EXITS_FILE)
    get_format("hf").write(LoadedModel(ee.base, loaded.tokenizer, loaded.manifest), folder)


EARLY_EXIT = ModelFormat("early-exit", _read, _write)
