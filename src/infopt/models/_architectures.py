"""Architectures of ours that transformers does not ship, registered with its Auto classes on import."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig

from infopt.models.modeling_pruned_bert import (
    PrunedBertConfig,
    PrunedBertForSequenceClassification,
    PrunedBertModel,
)

__all__ = ["pruned_bert_config"]

_PRUNED_BERT_CLASSES: dict[Any, Any] = {
    AutoConfig: PrunedBertConfig,
    AutoModel: PrunedBertModel,
    AutoModelForSequenceClassification: PrunedBertForSequenceClassification,
}

AutoConfig.register(PrunedBertConfig.model_type, PrunedBertConfig, exist_ok=True)
for auto, cls in _PRUNED_BERT_CLASSES.items():
    if auto is not AutoConfig:
        auto.register(PrunedBertConfig, cls, exist_ok=True)
    # save_pretrained copies the file defining a class registered for an auto class next to the weights
    cls.register_for_auto_class(auto.__name__)


def pruned_bert_config(config: PretrainedConfig, heads_per_layer: list[int]) -> PrunedBertConfig:
    """`config` (a BERT config) with the heads left in each layer, loadable by `from_pretrained(trust_remote_code)`."""
    settings = {k: v for k, v in config.to_dict().items() if k != "model_type"}
    pruned = PrunedBertConfig.from_dict({**settings, "heads_per_layer": heads_per_layer})
    # every entry, not only the saved class's own: a classifier folder also loads with AutoModel
    pruned.auto_map = {auto.__name__: f"{cls.__module__.rpartition('.')[2]}.{cls.__name__}"
                       for auto, cls in _PRUNED_BERT_CLASSES.items()}
    return pruned
