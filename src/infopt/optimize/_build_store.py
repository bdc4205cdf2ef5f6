"""Variants built by recipe, kept on disk so that a second run (say with a bigger budget) reuses them.

    $INFOPT_CACHE/builds/<parent fingerprint>/<hash of the recipe steps + the data they read>/   a model folder
    $INFOPT_CACHE/results/<hash of variant fingerprint, eval data, bench, machine>.json          a VariantResult

($INFOPT_BUILDS moves both, e.g. to keep a test's builds apart without hiding the bundled models.)

`BuildStore` has `BuildCache`'s get / put, so `build(recipe, base, inputs, store)` reuses every stored prefix.
Each folder is written by `save_model` (atomically, `infopt._atomic`): a crash leaves no half-written build.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from infopt._atomic import atomic_file
from infopt.evaluate import BenchConfig, EvalSpec, SpeedResult, VariantResult
from infopt.models import LoadedModel, cache_dir, load_model, save_model
from infopt.optimize._recipes import BuildCache, Recipe, StageInputs

__all__ = ["BuildStore", "ResultStore", "inputs_key"]


def _hash(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def inputs_key(inputs: StageInputs) -> str:
    """A hash of what the stages read besides the model: calibration texts and the labelled train split."""
    train = inputs.train
    return _hash(inputs.calibration, None if train is None else [train.texts, train.labels, train.label_names])


def _store_root() -> Path:
    return Path(os.environ["INFOPT_BUILDS"]) if os.environ.get("INFOPT_BUILDS") else cache_dir()


class BuildStore(BuildCache):
    """A BuildCache that also keeps each model it is given under `root/<parent fingerprint>/<steps hash>/`.

    Models of a parent without a fingerprint (not loaded from or saved to a folder) stay in memory only."""

    def __init__(self, inputs: StageInputs, root: Path | None = None) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else _store_root() / "builds"
        self.inputs = inputs_key(inputs)
        self.hits: list[str] = []
        """Folders reused from disk during this run."""

    def folder(self, base: LoadedModel, steps: tuple[Any, ...]) -> Path | None:
        """Where the model of `steps` applied to `base` is kept (None: `base` has no fingerprint)."""
        if not base.manifest.fingerprint:
            return None
        return self.root / base.manifest.fingerprint / _hash(Recipe("", "", steps).to_manifest(), self.inputs)

    def get(self, base: LoadedModel, steps: tuple[Any, ...]) -> LoadedModel | None:
        if (hit := super().get(base, steps)) is not None:
            return hit
        folder = self.folder(base, steps)
        if folder is None or not (folder / "infopt.json").is_file():
            return None
        try:
            model = load_model(folder)
        except Exception:  # a folder from another infopt version or a damaged one: build again
            return None
        self.hits.append(str(folder))
        super().put(base, steps, model)
        return model

    def put(self, base: LoadedModel, steps: tuple[Any, ...], model: LoadedModel) -> None:
        folder = self.folder(base, steps)
        if folder is not None:
            model = save_model(model, folder, overwrite=True)
        super().put(base, steps, model)


class ResultStore:
    """Measured results, by (variant fingerprint, parent fingerprint, eval data, bench settings, machine): a variant
    measured before against the same baseline, on the same data and machine, is not measured again."""

    def __init__(self, parent: str, spec: EvalSpec, bench: BenchConfig, machine: dict[str, Any],
                 root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else _store_root() / "results"
        fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "reference"}
        reference = None if spec.reference is None else spec.reference.numpy().round(5).tolist()
        hw = {k: machine.get(k) for k in ("model_name", "flags", "cores")}
        self.context = _hash(parent, fields, reference, asdict(bench), hw)

    def _path(self, fingerprint: str) -> Path:
        return self.root / f"{_hash(fingerprint, self.context)}.json"

    def get(self, fingerprint: str) -> VariantResult | None:
        if not fingerprint or not (path := self._path(fingerprint)).is_file():
            return None
        try:
            d = json.loads(path.read_text())
            return VariantResult(**{**d, "speed": SpeedResult(**d["speed"])})
        except (ValueError, TypeError, KeyError, OSError):
            return None

    def put(self, result: VariantResult) -> None:
        if not result.fingerprint:
            return
        with atomic_file(self._path(result.fingerprint)) as tmp:
            tmp.write_text(json.dumps(asdict(result)))
