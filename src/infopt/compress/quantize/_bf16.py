"""`torch-bf16`: every weight and activation of the torch model in bfloat16, the model's outputs cast to float32.

Token ids stay int64; modules matched by `exclude` stay float32 (their floating inputs are cast up, their outputs
back down). The casts are forward hooks, so they survive deepcopy and are rebuilt by `replay` on load.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from infopt.compress.quantize._configs import TorchBf16Config
from infopt.compress.quantize._modules import excluded

__all__ = ["apply_bf16", "cast_floats", "cpu_bf16_support"]


def cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """`value` with every floating tensor in it (nested in tuples, lists, dicts, ModelOutputs) cast to `dtype`."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() and value.dtype != dtype else value
    if isinstance(value, tuple | list):
        return type(value)(cast_floats(v, dtype) for v in value)
    if isinstance(value, Mapping) and hasattr(value, "__setitem__"):  # dicts and ModelOutputs, in place
        for key in list(value.keys()):
            value[key] = cast_floats(value[key], dtype)  # type: ignore[index]
    return value


def _cast_inputs(dtype: torch.dtype, _module: nn.Module, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return cast_floats(args, dtype), cast_floats(kwargs, dtype)


def _cast_output(dtype: torch.dtype, _module: nn.Module, _args: Any, output: Any) -> Any:
    return cast_floats(output, dtype)


def cpu_bf16_support() -> str:
    """`amx`, `avx512_bf16` (this CPU computes in bf16) or `none` (oneDNN converts: slower than float32)."""
    if torch.cpu._is_amx_tile_supported():
        return "amx"
    return "avx512_bf16" if torch.cpu._is_avx512_bf16_supported() else "none"


def apply_bf16(model: nn.Module, config: TorchBf16Config, weights: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Cast `model` to bfloat16 in place (excluded modules stay float32); `weights` makes no difference here."""
    model.to(torch.bfloat16)
    kept: list[str] = []
    for name, module in model.named_modules():
        if not name or not excluded(name, config.exclude) or any(name.startswith(k + ".") for k in kept):
            continue
        module.to(torch.float32)
        module.register_forward_pre_hook(functools.partial(_cast_inputs, torch.float32), with_kwargs=True)
        module.register_forward_hook(functools.partial(_cast_output, torch.bfloat16))
        kept.append(name)
    model.register_forward_hook(functools.partial(_cast_output, torch.float32))
    return model, {"dtype": "bfloat16", "float32_modules": kept, "cpu_bf16": cpu_bf16_support()}
