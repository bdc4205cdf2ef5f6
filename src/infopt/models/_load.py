"""Load a model by bundled short name or from a folder, whatever format infopt saved it in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
)

from infopt.errors import InfoptError, UserError
from infopt.models._loaded import LoadedModel
from infopt.models._manifest import MANIFEST_FILE, Manifest, Task, fingerprint_folder
from infopt.models._onnx import OnnxModel

__all__ = ["auto_class", "infer_task", "load_model"]


def infer_task(config: PretrainedConfig) -> Task:
    """Guess the task from the architectures named in config.json."""
    archs = " ".join(config.architectures or [])
    if "ForSequenceClassification" in archs:
        return "classification"
    if "ForCausalLM" in archs or "LMHead" in archs:
        return "causal-lm"
    return "embedding"


def auto_class(task: str) -> Any:
    return {
        "classification": AutoModelForSequenceClassification,
        "causal-lm": AutoModelForCausalLM,
        "embedding": AutoModel,
    }[task]


def _check_folder(path: Path) -> None:
    if not path.exists():
        from infopt.models._bundled import BUNDLED_MODELS

        raise UserError(
            f"Model {str(path)!r} is neither a bundled model nor an existing folder.",
            f"pass one of {', '.join(BUNDLED_MODELS)} or the path of a Hugging Face model folder.",
        )
    if not path.is_dir() or not (path / "config.json").exists():
        raise UserError(
            f"{path} is not a model folder (it has no config.json).",
            "pass a folder written by save_pretrained or by infopt.",
        )


def _manifest_for(path: Path, config: PretrainedConfig, name: str) -> Manifest:
    if (path / MANIFEST_FILE).exists():
        try:
            return Manifest.from_file(path / MANIFEST_FILE)
        except (ValueError, TypeError) as e:
            raise UserError(f"{path / MANIFEST_FILE} is corrupt ({e}).", "delete it or re-save the model.") from None
    task = infer_task(config)
    id2label = sorted((int(i), str(label)) for i, label in (config.id2label or {}).items())
    labels = [label for _, label in id2label] if task == "classification" else []
    return Manifest(name=name, task=task, labels=labels, fingerprint=fingerprint_folder(path))


def load_model(name_or_path: str | Path) -> LoadedModel:
    """Load a bundled model (e.g. `minilm-l6`) or a model folder; raises InfoptError for bad input."""
    from infopt.models._bundled import BUNDLED_MODELS, bundled_path

    path = bundled_path(str(name_or_path)) if str(name_or_path) in BUNDLED_MODELS else Path(name_or_path)
    _check_folder(path)
    try:
        config = AutoConfig.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(
            f"{path} cannot be read as a model ({str(e).splitlines()[0]}).", "re-save the model folder."
        ) from None
    name = str(name_or_path) if str(name_or_path) in BUNDLED_MODELS else path.name
    manifest = _manifest_for(path, config, name=name)
    try:
        model = _load_weights(path, config, manifest)
    except InfoptError:
        raise
    except Exception as e:  # corrupt or truncated weight files surface as many exception types
        raise UserError(
            f"The weights in {path} cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]}).",
            "re-save or re-download the model folder.",
        ) from None
    return LoadedModel(model, tokenizer, manifest)


def _load_weights(path: Path, config: PretrainedConfig, manifest: Manifest) -> object:
    if manifest.format == "onnx":
        return OnnxModel(path / "model.onnx")
    cls = auto_class(manifest.task)
    if manifest.format == "hf":
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            raise UserError(f"{path} has a config.json but no weights.", "copy the model's weight files into it.")
        return cls.from_pretrained(path, dtype=torch.float32).eval()
    if manifest.format in ("torch-state", "sparse"):
        from infopt.compress import replay
        from infopt.compress.prune import SPARSE_FILE, read_sparse

        skeleton = cls.from_config(config, dtype=torch.float32).eval()
        model = replay(skeleton, manifest.recipe)
        if manifest.format == "sparse":
            state = read_sparse(path / SPARSE_FILE)
        else:
            state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model.eval()
    raise UserError(f"{path} has an unknown format {manifest.format!r}.", "re-save it with this version of infopt.")
