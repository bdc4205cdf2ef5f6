"""`weight-int8` / `weight-int4`: weight-only quantized nn.Linear replacements on aten CPU kernels.

int8: symmetric per output channel, `aten._weight_int8pack_mm(x, w_int8 [N, K], scales [N])`.
int4: asymmetric per group of `group_size` input features, gpt-fast's convention
`w = (q - 8) * scale + zero` with q in 0..15, `aten._weight_int4pack_mm_for_cpu`. The packed layout
of `_convert_weight_to_int4pack_for_cpu` depends on the CPU's vector ISA, so the state dict stores
the portable form (two nibbles per byte, [N, K/2] uint8) and the kernel layout is built on first use.
Both kernels take bfloat16 (fast) or float32 (slow) activations; inputs are cast in and out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from infopt.compress.quantize._configs import WeightInt4Config, WeightInt8Config
from infopt.compress.quantize._modules import linear_layers
from infopt.models import set_submodule

__all__ = ["Int4WeightOnlyLinear", "Int8WeightOnlyLinear", "apply_weight_only"]

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
INT8_BF16_K_MULTIPLE = 16
"""The bfloat16 int8 kernel needs in_features % 16 == 0 (other sizes crash the process)."""
INT4_N_MULTIPLE = 16
"""The int4 packing needs out_features % 16 == 0; other layers are zero-padded and the output sliced."""


def _linear_out(x: torch.Tensor, y: torch.Tensor, out_features: int, bias: torch.Tensor | None) -> torch.Tensor:
    y = y[:, :out_features].to(x.dtype)
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], out_features)


class Int8WeightOnlyLinear(nn.Module):
    """y = x @ (w_int8 * scale).T + b, with int8 weights dequantized inside the matmul kernel."""

    weight_int8: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, bias: bool, compute_dtype: str = "bfloat16") -> None:
        super().__init__()
        self.in_features, self.out_features, self.compute_dtype = in_features, out_features, compute_dtype
        dt = _DTYPES[compute_dtype]
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features, dtype=dt))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_float(cls, linear: nn.Linear, compute_dtype: str) -> Int8WeightOnlyLinear:
        w = linear.weight.detach().float()
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, compute_dtype)
        scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        new.weight_int8.copy_(torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8))
        new.scales.copy_(scales)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach())  # type: ignore[union-attr]
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features).to(self.scales.dtype).contiguous()
        y = torch.ops.aten._weight_int8pack_mm(x2, self.weight_int8, self.scales)
        return _linear_out(x, y, self.out_features, self.bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, int8 per-channel, {self.compute_dtype}"


def _forget_packed(module: nn.Module, _keys: object) -> None:
    module._packed = None  # type: ignore[assignment]


def _pad_n(n: int) -> int:
    return -(-n // INT4_N_MULTIPLE) * INT4_N_MULTIPLE


class Int4WeightOnlyLinear(nn.Module):
    """y = x @ dequant(w_int4).T + b, groups of `group_size` input features sharing scale and zero."""

    weight_int4: torch.Tensor
    scales_and_zeros: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, bias: bool, group_size: int = 32,
                 compute_dtype: str = "bfloat16") -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.group_size, self.compute_dtype = group_size, compute_dtype
        n = _pad_n(out_features)
        # portable form: q[:, 2i] in the low nibble, q[:, 2i + 1] in the high one; rows padded to 16
        self.register_buffer("weight_int4", torch.zeros(n, in_features // 2, dtype=torch.uint8))
        self.register_buffer(
            "scales_and_zeros", torch.zeros(in_features // group_size, n, 2, dtype=_DTYPES[compute_dtype])
        )
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._packed: torch.Tensor | None = None
        self.register_load_state_dict_post_hook(_forget_packed)

    @classmethod
    def from_float(cls, linear: nn.Linear, group_size: int, compute_dtype: str) -> Int4WeightOnlyLinear:
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size, compute_dtype)
        n, k = _pad_n(linear.out_features), linear.in_features
        w = torch.zeros(n, k)
        w[: linear.out_features] = linear.weight.detach().float()
        groups = w.reshape(n, k // group_size, group_size)
        lo, hi = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15.0).clamp(min=1e-6)
        q = torch.round((groups - lo) / scale).clamp(0, 15).to(torch.uint8).reshape(n, k)
        zero = lo + 8.0 * scale
        new.weight_int4.copy_(q[:, 0::2] | (q[:, 1::2] << 4))
        new.scales_and_zeros.copy_(torch.cat([scale, zero], dim=-1).transpose(0, 1))
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach())  # type: ignore[union-attr]
        return new

    def unpacked(self) -> torch.Tensor:
        """The int4 codes as [N_padded, K] int32 in 0..15."""
        lo, hi = self.weight_int4 & 0x0F, self.weight_int4 >> 4
        return torch.stack([lo, hi], dim=-1).reshape(self.weight_int4.shape[0], -1).to(torch.int32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._packed is None:
            self._packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(self.unpacked(), 1)
        x2 = x.reshape(-1, self.in_features).to(self.scales_and_zeros.dtype).contiguous()
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self._packed, self.group_size, self.scales_and_zeros)
        return _linear_out(x, y, self.out_features, self.bias)

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, int4 group={self.group_size}, "
                f"{self.compute_dtype}")


def _why_not(linear: nn.Linear, config: WeightInt8Config | WeightInt4Config) -> str | None:
    k = linear.in_features
    if isinstance(config, WeightInt4Config):
        if k % config.group_size:
            return f"in_features {k} is not a multiple of group_size {config.group_size}"
    elif config.compute_dtype == "bfloat16" and k % INT8_BF16_K_MULTIPLE:
        return f"in_features {k} is not a multiple of {INT8_BF16_K_MULTIPLE} (bfloat16 kernel)"
    return None


def apply_weight_only(model: nn.Module, config: WeightInt8Config | WeightInt4Config,
                      weights: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Swap every fitting nn.Linear (tied lm_heads included, which unties them) in place.

    `weights=False` builds empty modules of the same structure (for `replay` before load_state_dict).
    """
    done: list[str] = []
    skipped: dict[str, str] = {}
    for name, linear in linear_layers(model, config.exclude):
        reason = _why_not(linear, config)
        if reason:
            skipped[name] = reason
            continue
        new: nn.Module
        bias, k, n = linear.bias is not None, linear.in_features, linear.out_features
        if isinstance(config, WeightInt4Config):
            new = (Int4WeightOnlyLinear.from_float(linear, config.group_size, config.compute_dtype) if weights
                   else Int4WeightOnlyLinear(k, n, bias, config.group_size, config.compute_dtype))
        else:
            new = (Int8WeightOnlyLinear.from_float(linear, config.compute_dtype) if weights
                   else Int8WeightOnlyLinear(k, n, bias, config.compute_dtype))
        set_submodule(model, name, new)
        done.append(name)
    return model, {"quantized_layers": len(done), "skipped_layers": skipped}
