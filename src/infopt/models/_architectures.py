"""Architectures of ours that transformers does not ship, registered with its Auto classes on import."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from infopt.models.modeling_pruned_bert import (
    PrunedBertConfig,
    PrunedBertForSequenceClassification,
    PrunedBertModel,
)

__all__ = ["PRUNED_BERT_AUTO_MAP"]

PRUNED_BERT_AUTO_MAP = {
    "AutoConfig": "modeling_pruned_bert.PrunedBertConfig",
    "AutoModel": "modeling_pruned_bert.PrunedBertModel",
    "AutoModelForSequenceClassification": "modeling_pruned_bert.PrunedBertForSequenceClassification",
}
"""Written into a saved config, so `from_pretrained(folder, trust_remote_code=True)` finds the copied file."""

AutoConfig.register(PrunedBertConfig.model_type, PrunedBertConfig, exist_ok=True)
AutoModel.register(PrunedBertConfig, PrunedBertModel, exist_ok=True)
AutoModelForSequenceClassification.register(PrunedBertConfig, PrunedBertForSequenceClassification, exist_ok=True)
# save_pretrained copies the defining file of a class registered for an auto class next to the weights
PrunedBertConfig.register_for_auto_class()
PrunedBertModel.register_for_auto_class("AutoModel")
PrunedBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
