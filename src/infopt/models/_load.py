"""Load a model by bundled short name or from a folder, whatever format infopt saved it in."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from infopt.errors import InfoptError, UserError
from infopt.models._formats import get_format
from infopt.models._loaded import LoadedModel
from infopt.models._manifest import MANIFEST_FILE, Manifest, fingerprint_folder
from infopt.models._tasks import infer_task

__all__ = ["load_model"]


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
            manifest = Manifest.from_file(path / MANIFEST_FILE)
        except (ValueError, TypeError) as e:
            raise UserError(f"{path / MANIFEST_FILE} is corrupt ({e}).", "delete it or re-save the model.") from None
        if manifest.format == "hf" and any(s.get("stage") == "early-exit" for s in manifest.recipe):
            manifest = dataclasses.replace(manifest, format="early-exit")  # saved before early-exit had its format
        return manifest
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
    return get_format(manifest.format).read(path, config, manifest)
