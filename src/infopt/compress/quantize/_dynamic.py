"""`dynamic-int8` / `dynamic-int8-emb`: torch.ao dynamic quantization of nn.Linear (+ int8 embeddings)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

from infopt.compress.quantize._configs import DynamicInt8Config
from infopt.compress.quantize._embedding import quantize_input_embeddings
from infopt.compress.quantize._modules import linear_layers

__all__ = ["apply_dynamic"]


def apply_dynamic(model: nn.Module, config: DynamicInt8Config) -> tuple[nn.Module, dict[str, Any]]:
    """Quantize in place; returns the model and what was done (for the manifest's metrics)."""
    qconfig = per_channel_dynamic_qconfig if config.per_channel else default_dynamic_qconfig
    names = [name for name, _ in linear_layers(model, config.exclude)]
    if names:
        quantize_dynamic(model, qconfig_spec=dict.fromkeys(names, qconfig), dtype=torch.qint8, inplace=True)
    info: dict[str, Any] = {"quantized_layers": len(names)}
    if config.scheme == "dynamic-int8-emb":
        info["int8_embeddings"] = quantize_input_embeddings(model)
    return model, info
