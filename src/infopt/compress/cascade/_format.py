"""The `cascade` format: two model folders (`small/`, `large/`, any infopt format) and `cascade.json`.

`cascade.json` holds the threshold and how it was chosen; `cascade.safetensors` stamps the threshold and both
models' fingerprints, so the folder's fingerprint (which hashes top-level weight files) changes with either model
or the threshold. `load_model` on such a folder gives a `CascadeModel`; `infopt serve` serves it as one model.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import PretrainedConfig

from infopt.compress.cascade._calibrate import ThresholdChoice
from infopt.compress.cascade._model import CascadeModel, config_of
from infopt.errors import UserError
from infopt.models import LoadedModel, Manifest, ModelFormat, load_model, write_model

__all__ = ["CASCADE", "CASCADE_FILE", "STAMP_FILE", "make_cascade"]

CASCADE_FILE = "cascade.json"
STAMP_FILE = "cascade.safetensors"
_VERSION = 1


def _merged_config(small: LoadedModel, large: LoadedModel) -> Any:
    """The large model's config, with the smaller of the two position limits (the served token limit)."""
    config = config_of(large)
    if config is None:
        return None
    config = copy.deepcopy(config)
    other = getattr(config_of(small), "max_position_embeddings", None)
    mine = getattr(config, "max_position_embeddings", None)
    if isinstance(other, int) and isinstance(mine, int):
        config.max_position_embeddings = min(mine, other)
    return config


def make_cascade(small: LoadedModel, large: LoadedModel, threshold: float,
                 choice: ThresholdChoice | None = None, name: str = "cascade") -> LoadedModel:
    """A LoadedModel (format `cascade`) that runs `small`, then `large` on the rows below `threshold`."""
    model = CascadeModel(small, large, threshold, _merged_config(small, large))
    info = {"threshold": threshold, "small": small.manifest.name, "large": large.manifest.name,
            "calibration": choice.to_dict() if choice is not None else None}
    metrics = {k: getattr(choice, k) for k in ("escalation_rate", "accuracy", "drop_bound", "n")} if choice else {}
    manifest = dataclasses.replace(
        large.manifest, name=name, format="cascade", method="cascade", parent=large.manifest.fingerprint or None,
        labels=list(large.manifest.labels or small.manifest.labels),
        recipe=[*large.manifest.recipe, {"stage": "cascade", "config": info}], metrics=metrics, fingerprint="")
    return LoadedModel(model, large.tokenizer, manifest)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / CASCADE_FILE).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("threshold"), int | float):
            raise ValueError("no threshold")
    except (OSError, ValueError) as e:
        raise UserError(f"{path / CASCADE_FILE} cannot be read ({e}).", "re-export the cascade.") from None
    if data.get("version", _VERSION) > _VERSION:
        raise UserError(f"{path} was written by a newer infopt (cascade version {data['version']}).",
                        "upgrade infopt.")
    return data


def _stamp(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path / STAMP_FILE), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # missing or foreign file: several exception types
        raise UserError(f"{path / STAMP_FILE} cannot be read ({type(e).__name__}).", "re-export the cascade.") from None


def _read(path: Path, config: PretrainedConfig, manifest: Manifest) -> Any:
    data = _read_json(path)
    small, large = load_model(path / "small"), load_model(path / "large")
    stamp = _stamp(path)
    found = {"small": small.manifest.fingerprint, "large": large.manifest.fingerprint,
             "threshold": repr(float(data["threshold"]))}
    if stamp != found:
        raise UserError(f"The models or threshold in {path} are not the ones the cascade was exported with.",
                        "re-export the cascade instead of editing its folder.")
    return CascadeModel(small, large, float(data["threshold"]), config).eval()


def _write(loaded: LoadedModel, folder: Path) -> None:
    cascade = loaded.model
    if not isinstance(cascade, CascadeModel):
        raise TypeError(f"the cascade format stores a CascadeModel, got {type(cascade).__name__}")
    parts = {}
    for role, sub in (("small", cascade.small), ("large", cascade.large)):
        (folder / role).mkdir()
        parts[role] = write_model(sub, folder / role)
    if cascade.config is not None:
        cascade.config.save_pretrained(folder)
    else:
        (folder / "config.json").write_text((folder / "large" / "config.json").read_text())
    steps = [s["config"] for s in loaded.manifest.recipe if s.get("stage") == "cascade"]
    step: dict[str, Any] = steps[-1] if steps else {}
    data = {"version": _VERSION, "threshold": cascade.threshold, "calibration": step.get("calibration"),
            **{role: {"name": m.name, "format": m.format, "fingerprint": m.fingerprint} for role, m in parts.items()}}
    (folder / CASCADE_FILE).write_text(json.dumps(data, indent=2))
    stamp = {"small": parts["small"].fingerprint, "large": parts["large"].fingerprint,
             "threshold": repr(float(cascade.threshold))}
    save_file({"threshold": torch.tensor([cascade.threshold], dtype=torch.float64)}, folder / STAMP_FILE, stamp)


CASCADE = ModelFormat("cascade", _read, _write)
