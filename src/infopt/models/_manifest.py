"""The manifest saved beside every model folder: what it is, how it was made, from which parent."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

__all__ = ["MANIFEST_FILE", "WEIGHT_FILES", "Manifest", "Task", "fingerprint_folder", "weight_files", "weights_mb"]

Task = Literal["classification", "embedding", "causal-lm"]
_TASKS: tuple[str, ...] = get_args(Task)
MANIFEST_FILE = "infopt.json"
WEIGHT_FILES = ("model.safetensors", "state.pt", "model.onnx", "sparse.safetensors", "model.xml", "model.bin")
_OTHER_WEIGHTS = ("*.safetensors", "pytorch_model*.bin", "*.onnx.data")


@dataclass(frozen=True)
class Manifest:
    """Identity and history of one model variant."""

    name: str
    """Short name of this variant, e.g. `minilm-l6-rt` or `dynamic-int8`."""
    task: Task
    """What the model computes: class logits, sentence embeddings or next-token logits."""
    format: str = "hf"
    """How the folder stores weights: `hf` (save_pretrained), `torch-state` (state dict + recipe), `onnx`."""
    method: str = "original"
    """How it was made, e.g. `original`, `finetune`, `quantize:dynamic-int8`."""
    parent: str | None = None
    """Fingerprint of the model it was made from."""
    recipe: list[dict[str, Any]] = field(default_factory=list)
    """Steps applied to the parent, each `{"stage": ..., "config": {...}}`; replayed for `torch-state`."""
    labels: list[str] = field(default_factory=list)
    """Class names of a classifier, in logit order."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Measurements taken when it was made (e.g. test accuracy)."""
    fingerprint: str = ""
    """sha256 (first 16 hex) of the weight files; set when saved."""
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))

    def trained_on(self) -> str | None:
        """The dataset named by the recipe's fine-tuning step, if any."""
        for step in self.recipe:
            if step.get("stage") == "finetune" and "data" in step.get("config", {}):
                return str(step["config"]["data"])
        return None

    def derive(self, name: str, format: str, stage: str, config: dict[str, Any], metrics: dict[str, Any],
               method: str | None = None) -> Manifest:
        """The manifest of a model made from this one by one stage: its step appended to the recipe, this model's
        fingerprint as the parent, new metrics, no fingerprint yet (it is set when saved)."""
        return dataclasses.replace(
            self,
            name=name,
            format=format,
            method=method or f"{stage}:{config.get('scheme') or config.get('method')}",
            parent=self.fingerprint or None,
            recipe=[*self.recipe, {"stage": stage, "config": config}],
            metrics=metrics,
            fingerprint="",
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_file(cls, path: Path) -> Manifest:
        """Raises ValueError (bad JSON, unknown task) or TypeError (wrong shape, missing fields)."""
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("task") not in _TASKS:
            raise ValueError(f"unknown task {data.get('task')!r}, expected one of {', '.join(_TASKS)}")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def weight_files(folder: Path) -> list[Path]:
    """The files that hold a model's weights (WEIGHT_FILES first, then shards and the like)."""
    extra = sorted({p.name for pattern in _OTHER_WEIGHTS for p in folder.glob(pattern)} - set(WEIGHT_FILES))
    return [folder / n for n in (*WEIGHT_FILES, *extra) if (folder / n).is_file()]


def weights_mb(folder: Path) -> float:
    """Megabytes (1e6 bytes) of the weight files in a model folder, and of the model folders inside it (a
    cascade's small and large models)."""
    folder = Path(folder)
    inner = [d for d in sorted(folder.iterdir()) if (d / "infopt.json").is_file()] if folder.is_dir() else []
    return sum(p.stat().st_size for p in weight_files(folder)) / 1e6 + sum(weights_mb(d) for d in inner)


def fingerprint_folder(folder: Path) -> str:
    """Content hash of the weight files in a model folder."""
    h = hashlib.sha256()
    for path in weight_files(folder):
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]
