"""`dynamic-int8` / `dynamic-int8-emb`: torch.ao dynamic quantization of nn.Linear (+ int8 embeddings).

torch.ao's DynamicQuantizedLinear always quantizes activations to 7 bits (`reduce_range=True`) so that
fbgemm's u8 x s8 pair sums cannot overflow int16 on CPUs without VNNI. With `activation_bits=8` the
weights get 7 bits instead (range -64..63: 255 * 64 * 2 < 32767) and activations the full 8 bits,
the same trade ONNX Runtime makes with reduce_range; on MiniLM-L6 it cuts the error roughly in half.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn
from torch.ao.quantization import (
    MinMaxObserver,
    PerChannelMinMaxObserver,
    PlaceholderObserver,
    QConfig,
    quantize_dynamic,
)

from infopt.compress.quantize._configs import DynamicInt8Config, DynamicInt8EmbConfig
from infopt.compress.quantize._embedding import quantize_input_embeddings
from infopt.compress.quantize._modules import linear_layers
from infopt.models import set_submodule

__all__ = ["FullRangeDynamicLinear", "apply_dynamic"]


class FullRangeDynamicLinear(nnqd.Linear):
    """DynamicQuantizedLinear with 8-bit activations; its weights must use at most 7 bits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self._packed_params._packed_params
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=False).to(x.dtype)

    def _get_name(self) -> str:
        return "FullRangeDynamicQuantizedLinear"


def _qconfig(config: DynamicInt8Config | DynamicInt8EmbConfig) -> QConfig:
    qmax = 127 if config.activation_bits == 7 else 63  # 8-bit activations -> 7-bit weights
    observer: Any = PerChannelMinMaxObserver if config.per_channel else MinMaxObserver
    qscheme = torch.per_channel_symmetric if config.per_channel else torch.per_tensor_symmetric
    return QConfig(
        activation=PlaceholderObserver.with_args(dtype=torch.quint8, quant_min=0, quant_max=255, is_dynamic=True),
        weight=observer.with_args(dtype=torch.qint8, qscheme=qscheme, quant_min=-qmax - 1, quant_max=qmax),
    )


def apply_dynamic(model: nn.Module, config: DynamicInt8Config | DynamicInt8EmbConfig,
                  weights: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Quantize in place; returns the model and what was done (for the manifest's metrics).

    `weights=False` builds empty quantized modules of the same structure (for `replay`): the packed
    weights, their scales and qscheme all come from the state dict loaded afterwards.
    """
    layers = linear_layers(model, config.exclude)
    cls = FullRangeDynamicLinear if config.activation_bits == 8 else nnqd.Linear
    if layers and weights:
        quantize_dynamic(model, qconfig_spec=dict.fromkeys([n for n, _ in layers], _qconfig(config)),
                         dtype=torch.qint8, mapping={nn.Linear: cls}, inplace=True)
    elif layers:
        for name, linear in layers:
            set_submodule(model, name, cls(linear.in_features, linear.out_features, linear.bias is not None))
    info: dict[str, Any] = {"quantized_layers": len(layers)}
    if isinstance(config, DynamicInt8EmbConfig):
        info["int8_embeddings"] = quantize_input_embeddings(model, weights)
    return model, info
