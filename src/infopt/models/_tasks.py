"""What a model computes, read from its config, and the transformers Auto class that builds it."""

from __future__ import annotations

from typing import Any

from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, PretrainedConfig

from infopt.models._manifest import Task

__all__ = ["auto_class", "infer_task"]


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
