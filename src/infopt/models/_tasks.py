"""What a model computes, read from its config, and the transformers Auto class that builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, PretrainedConfig

from infopt.models._manifest import Task

__all__ = ["auto_class", "infer_task", "new_classifier"]


def infer_task(config: PretrainedConfig) -> Task:
    """Guess the task from the architectures named in config.json."""
    archs = " ".join(config.architectures or [])
    if "ForSequenceClassification" in archs:
        return "classification"
    if "ForCausalLM" in archs or "LMHead" in archs:
        return "causal-lm"
    return "embedding"


def auto_class(task: str) -> Any:
    """The Auto class of a task: `AutoModelForSequenceClassification`, `AutoModelForCausalLM` or `AutoModel`."""
    return {
        "classification": AutoModelForSequenceClassification,
        "causal-lm": AutoModelForCausalLM,
        "embedding": AutoModel,
    }[task]


def new_classifier(folder: str | Path, labels: list[str], seed: int = 0) -> Any:
    """A pretrained encoder from `folder` with a new classification head for `labels` (initialised with `seed`,
    without touching the caller's random state), in float32."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return AutoModelForSequenceClassification.from_pretrained(
            folder,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)},
            dtype=torch.float32,
        )
