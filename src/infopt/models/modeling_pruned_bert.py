"""BERT with its own number of attention heads in each layer: what structured head pruning leaves.

BertConfig derives the head size from hidden_size / num_attention_heads, so it cannot describe a layer that lost
heads. This file adds `heads_per_layer` to the config and resizes the attention projections to match. It is
copied next to the weights when a pruned model is saved, so plain transformers loads the folder:

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

It must import nothing but torch and transformers.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import BertConfig, BertForSequenceClassification, BertModel

__all__ = ["PrunedBertConfig", "PrunedBertForSequenceClassification", "PrunedBertModel"]


class PrunedBertConfig(BertConfig):
    """BertConfig plus `heads_per_layer`; the head size stays hidden_size // num_attention_heads."""

    model_type = "pruned_bert"

    def __init__(self, heads_per_layer: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heads_per_layer = list(heads_per_layer or [self.num_attention_heads] * self.num_hidden_layers)


def _resize_attention(bert: BertModel, config: PrunedBertConfig) -> None:
    head_size = config.hidden_size // config.num_attention_heads
    for layer, heads in zip(bert.encoder.layer, config.heads_per_layer, strict=True):
        width = heads * head_size  # (hidden,) -> (heads * head_size,) instead of (hidden,)
        attention: Any = layer.attention
        attention.self.num_attention_heads, attention.self.all_head_size = heads, width
        attention.self.query = nn.Linear(config.hidden_size, width)
        attention.self.key = nn.Linear(config.hidden_size, width)
        attention.self.value = nn.Linear(config.hidden_size, width)
        attention.output.dense = nn.Linear(width, config.hidden_size)


class PrunedBertModel(BertModel):
    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        _resize_attention(self, config)


class PrunedBertForSequenceClassification(BertForSequenceClassification):
    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig) -> None:
        super().__init__(config)
        _resize_attention(self.bert, config)
