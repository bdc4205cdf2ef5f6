"""The `openvino` format: an OpenVINO IR (model.xml + model.bin) and config.json, compiled on load with the
precision hint and threads of the scheme the manifest's recipe records."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

from infopt.compress.quantize._configs import OpenVinoConfig, config_from_dict
from infopt.compress.quantize._openvino import MODEL_XML, OUTPUTS, OpenVinoModel, import_openvino
from infopt.errors import InfoptError, UserError
from infopt.models import LoadedModel, Manifest, ModelFormat

__all__ = ["MODEL_BIN", "OPENVINO", "recorded_config"]

MODEL_BIN = "model.bin"
"""The IR's weights (raw tensors, not a pickle)."""


def recorded_config(manifest: Manifest) -> OpenVinoConfig | None:
    """The config of the recipe's last `quantize` step, if it is an openvino scheme."""
    steps = [s for s in manifest.recipe if s.get("stage") == "quantize"]
    if not steps:
        return None
    config = config_from_dict(steps[-1].get("config", {}))
    return config if config.kind == "openvino" else None  # type: ignore[return-value]


def _read(path: Path, config: PretrainedConfig, manifest: Manifest) -> Any:
    xml = path / MODEL_XML
    fix = "re-save the model (quantize it again with an openvino scheme), or copy its model.xml and model.bin back."
    if not xml.is_file() or not (path / MODEL_BIN).is_file():
        missing = xml if not xml.is_file() else path / MODEL_BIN
        raise UserError(f"{missing} is missing, so the OpenVINO model in {path} cannot be loaded.", fix)
    if manifest.task not in OUTPUTS:
        raise UserError(f"{path} says it is an OpenVINO {manifest.task} model; the openvino format holds "
                        "classification and embedding models only.", fix)
    recorded = recorded_config(manifest)
    hint = recorded.precision_hint if recorded is not None else "f32"
    threads = recorded.threads if recorded is not None else None
    import_openvino()  # MissingDependency before anything else
    try:
        return OpenVinoModel(xml, hint, threads, OUTPUTS[manifest.task], config)
    except InfoptError:
        raise
    except Exception as e:  # OpenVINO raises RuntimeError subclasses for unreadable or inconsistent IR
        raise UserError(f"{xml} (with {MODEL_BIN}) cannot be read by OpenVINO ({_reason(e)}).", fix) from None


def _reason(e: Exception) -> str:
    """The line of an OpenVINO error that says what is wrong (not the `Exception from <file>` / `Check` lines)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.startswith(("Exception from ", "Check '"))]
    return (said or lines or [type(e).__name__])[-1][:200]


def _write(loaded: LoadedModel, folder: Path) -> None:
    model = loaded.model
    if not isinstance(model, OpenVinoModel):
        raise TypeError(f"the openvino format writes an OpenVinoModel, not {type(model).__name__}")
    shutil.copyfile(model.path, folder / MODEL_XML)
    shutil.copyfile(model.path.with_suffix(".bin"), folder / MODEL_BIN)
    shutil.copyfile(model.path.parent / "config.json", folder / "config.json")  # beside it since apply_openvino


OPENVINO = ModelFormat("openvino", _read, _write)
