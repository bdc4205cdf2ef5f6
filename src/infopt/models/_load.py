"""Load a model by bundled short name or from a folder, whatever format infopt saved it in.

Safe by default: weights are read from safetensors (and ONNX) only, never from pickle files (pytorch_model.bin,
*.pt), and no Python file of the folder runs (`trust_remote_code` is never passed true), unless the caller opts in
(`allow_pickle=True`, `trust_remote_code=True`; the CLI's `--allow-pickle` / `--trust-remote-code`, which set
`$INFOPT_ALLOW_PICKLE` / `$INFOPT_TRUST_REMOTE_CODE` to 1 for the processes a command starts). infopt's own
`torch-state` format keeps a state dict in state.pt, read with `torch.load(weights_only=True)` (torch's allow-list
unpickler: tensors and plain containers, no code).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from infopt.errors import InfoptError, UserError
from infopt.models._formats import LOAD_OPTIONS, LoadOptions, get_format
from infopt.models._loaded import LoadedModel
from infopt.models._manifest import MANIFEST_FILE, Manifest, fingerprint_folder
from infopt.models._tasks import infer_task

__all__ = ["ALLOW_PICKLE_ENV", "PICKLE_PATTERNS", "TRUST_REMOTE_CODE_ENV", "load_model"]

log = logging.getLogger(__name__)

ALLOW_PICKLE_ENV = "INFOPT_ALLOW_PICKLE"
"""Set to 1: `load_model` calls that do not say otherwise may read pickle weights (`--allow-pickle`)."""
TRUST_REMOTE_CODE_ENV = "INFOPT_TRUST_REMOTE_CODE"
"""Set to 1: `load_model` calls that do not say otherwise may run a folder's own code (`--trust-remote-code`)."""
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
"""Weight files that are Python pickles (loading one can run code)."""
_OWN_PICKLES = {"torch-state": {"state.pt"}, "openvino": {"model.bin"}}
"""Files of infopt's own formats that match PICKLE_PATTERNS but are safe: torch-state's state.pt (read with
torch.load(weights_only=True)), openvino's model.bin (raw IR weights, not a pickle)."""


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
        if manifest.fingerprint and (actual := fingerprint_folder(path)) != manifest.fingerprint:
            log.warning("the weights in %s changed since infopt saved it (fingerprint %s, now %s)", path,
                        manifest.fingerprint, actual)  # e.g. save_pretrained over it: never the old one's caches
            manifest = dataclasses.replace(manifest, fingerprint=actual)
        return manifest
    task = infer_task(config)
    id2label = sorted((int(i), str(label)) for i, label in (config.id2label or {}).items())
    labels = [label for _, label in id2label] if task == "classification" else []
    return Manifest(name=name, task=task, labels=labels, fingerprint=fingerprint_folder(path))


def _flag(value: bool | None, env: str, inherited: bool) -> bool:
    if value is not None:
        return bool(value)
    return inherited or os.environ.get(env, "").strip().lower() in ("1", "true", "yes")


def _options(allow_pickle: bool | None, trust_remote_code: bool | None) -> LoadOptions:
    """The explicit arguments, else the enclosing `load_model` call's options (a cascade's parts), else the
    environment variables, else off."""
    outer = LOAD_OPTIONS.get() or LoadOptions()
    return LoadOptions(_flag(allow_pickle, ALLOW_PICKLE_ENV, outer.allow_pickle),
                       _flag(trust_remote_code, TRUST_REMOTE_CODE_ENV, outer.trust_remote_code))


def _check_pickles(path: Path, manifest: Manifest, options: LoadOptions) -> None:
    """Refuse a folder whose weights are pickle files only, unless `allow_pickle` (then say so in the log)."""
    own = _OWN_PICKLES.get(manifest.format, set())
    pickles = sorted({f.name for pattern in PICKLE_PATTERNS for f in path.glob(pattern)} - own)
    if not pickles or any(path.glob("*.safetensors")) or (path / "model.onnx").exists():
        return
    if not options.allow_pickle:
        raise UserError(
            f"{path} holds its weights only in pickle files ({', '.join(pickles)}); loading a pickle can run "
            "arbitrary code, so infopt reads weights from safetensors only.",
            "convert the folder to safetensors (model.save_pretrained(folder, safe_serialization=True)), or, if you "
            "trust where it came from, pass --allow-pickle (load_model(..., allow_pickle=True)).",
        )
    log.warning("loading pickle weights %s from %s (allow_pickle is on)", ", ".join(pickles), path)


def _remote_code_error(path: Path) -> UserError:
    return UserError(
        f"{path} needs Python code from the folder itself (its config names classes in an auto_map that "
        "transformers does not ship), and infopt never runs a model folder's code unless asked.",
        "read the folder's .py files first; if you trust them, pass --trust-remote-code "
        "(load_model(..., trust_remote_code=True)).",
    )


def load_model(name_or_path: str | Path, *, allow_pickle: bool | None = None,
               trust_remote_code: bool | None = None) -> LoadedModel:
    """Load a bundled model (e.g. `minilm-l6`) or a model folder; raises InfoptError for bad input. Weights come
    from safetensors / ONNX only and no code of the folder runs, unless `allow_pickle` / `trust_remote_code`
    (None: `$INFOPT_ALLOW_PICKLE` / `$INFOPT_TRUST_REMOTE_CODE` = 1, else off)."""
    options = _options(allow_pickle, trust_remote_code)
    token = LOAD_OPTIONS.set(options)
    try:
        return _load(name_or_path, options)
    finally:
        LOAD_OPTIONS.reset(token)


def _load(name_or_path: str | Path, options: LoadOptions) -> LoadedModel:
    from infopt.models._bundled import BUNDLED_MODELS, bundled_path

    path = bundled_path(str(name_or_path)) if str(name_or_path) in BUNDLED_MODELS else Path(name_or_path)
    _check_folder(path)
    trust = options.trust_remote_code
    if trust:
        log.warning("trust_remote_code is on: %s may run its own Python code", path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
    except (OSError, ValueError, KeyError) as e:
        if "trust_remote_code" in str(e):
            raise _remote_code_error(path) from None
        raise UserError(
            f"{path} cannot be read as a model ({str(e).splitlines()[0]}).", "re-save the model folder."
        ) from None
    name = str(name_or_path) if str(name_or_path) in BUNDLED_MODELS else path.name
    manifest = _manifest_for(path, config, name=name)
    _check_pickles(path, manifest, options)
    try:
        model = _load_weights(path, config, manifest)
    except InfoptError:
        raise
    except Exception as e:  # corrupt or truncated weight files surface as many exception types
        if isinstance(e, ValueError) and "trust_remote_code" in str(e):
            raise _remote_code_error(path) from None
        raise UserError(
            f"The weights in {path} cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]}).",
            "re-save or re-download the model folder.",
        ) from None
    return LoadedModel(model, tokenizer, manifest)


def _load_weights(path: Path, config: PretrainedConfig, manifest: Manifest) -> object:
    return get_format(manifest.format).read(path, config, manifest)
