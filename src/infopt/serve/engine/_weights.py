"""The engine's linear weights, one small class per format, each with `linear(x)`: x `[N, K]` -> `[N, out]`.

    DenseWeight   float32 / bfloat16, F.linear (oneDNN; AMX / AVX-512 BF16 where the CPU has them)
    Int8Weight    symmetric per output channel, aten `_weight_int8pack_mm` (dequantizes inside the kernel)
    Int4Weight    asymmetric per group of 32 inputs, aten `_weight_int4pack_mm_for_cpu` (gpt-fast's convention)

The int8 / int4 kernels take bfloat16 activations (float32 ones are about 10x slower); `linear` casts in and out
when the runner's activations are another dtype. Their time grows with the rows (one GEMV per row), so steps of
many rows (prefill chunks) dequantize the layer to bfloat16 and run one F.linear instead (AMX / AVX-512 BF16).
Their constraints (see infopt.compress.quantize._weight_only):
int8 with bfloat16 needs in_features % 16 == 0, int4 needs in_features % group_size == 0 and out_features % 16 == 0;
`make_weight` falls back to a dense bfloat16 weight where a layer does not fit. `fuse` concatenates weights of the
same input along the outputs (q|k|v, gate|up): one kernel call instead of two or three.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from infopt.compress.quantize._weight_only import (
    INT4_N_MULTIPLE,
    INT8_BF16_K_MULTIPLE,
    Int4WeightOnlyLinear,
    Int8WeightOnlyLinear,
)
from infopt.errors import NotApplicable

__all__ = ["WEIGHT_FORMATS", "DenseWeight", "Int4Weight", "Int8Weight", "LinearWeight", "from_module", "fuse",
           "make_weight"]

WEIGHT_FORMATS = ("float32", "bfloat16", "int8", "int4")
"""The concrete formats of the engine's linear weights ("auto" resolves to one of them)."""
INT4_GROUP = 32
"""Input features sharing one int4 scale and zero."""
INT8_KERNEL_ROWS = 32
"""Above this many rows the int8 kernel (its time grows with the rows: 256 rows cost 250x one) loses to
dequantizing to bf16 and one F.linear (about 1 ms for a 3072 x 576 layer); prefill chunks take that path."""
INT4_KERNEL_ROWS = 128
"""The same for int4, whose dequantization (unpacking nibbles) costs more."""


class LinearWeight(Protocol):
    """A weight that computes `x @ W.T` for activations `x [N, K]`."""

    out_features: int
    nbytes: int
    """Bytes one full pass over the weight reads."""

    def linear(self, x: torch.Tensor) -> torch.Tensor: ...


class DenseWeight:
    """A float weight `[N, K]` (float32 or bfloat16)."""

    def __init__(self, w: torch.Tensor) -> None:
        self.w = w  # [N, K]
        self.out_features = w.shape[0]
        self.nbytes = w.numel() * w.element_size()

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.w.dtype:
            return F.linear(x, self.w)
        return F.linear(x.to(self.w.dtype), self.w).to(x.dtype)


class Int8Weight:
    """int8 codes `[N, K]` and one bfloat16 scale per output channel."""

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor) -> None:
        self.codes = codes.contiguous()  # [N, K] int8
        self.scales = scales.to(torch.bfloat16).contiguous()  # [N]
        self.out_features = codes.shape[0]
        self.nbytes = codes.numel() + 2 * scales.numel()

    @classmethod
    def quantize(cls, w: torch.Tensor) -> Int8Weight:
        w = w.detach().float()
        scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)  # [N]
        return cls(torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8), scales)

    def dequantized(self) -> torch.Tensor:
        """The weight `[N, K]` in bfloat16."""
        return self.codes.to(torch.bfloat16) * self.scales[:, None]

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        xb = x if x.dtype == torch.bfloat16 else x.to(torch.bfloat16)
        if x.shape[0] > INT8_KERNEL_ROWS:
            y = F.linear(xb, self.dequantized())
        else:
            y = torch.ops.aten._weight_int8pack_mm(xb.contiguous(), self.codes, self.scales)
        return y if y.dtype == x.dtype else y.to(x.dtype)


class Int4Weight:
    """int4 codes in the portable form (`[N, K/2]` uint8, two per byte) and bfloat16 scales and zeros
    `[K / group, N, 2]`; the CPU kernel's layout is built once from them."""

    def __init__(self, portable: torch.Tensor, scales_and_zeros: torch.Tensor, group_size: int,
                 out_features: int) -> None:
        self.portable = portable  # [Np, K/2] uint8, Np = out_features padded to 16
        self.scales_and_zeros = scales_and_zeros.to(torch.bfloat16).contiguous()  # [K / group, Np, 2]
        self.group_size = group_size
        self.out_features = out_features
        self.padded = portable.shape[0] != out_features
        lo, hi = portable & 0x0F, portable >> 4
        codes = torch.stack([lo, hi], dim=-1).reshape(portable.shape[0], -1).to(torch.int32)  # [Np, K]
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
        self.nbytes = portable.numel() + 2 * self.scales_and_zeros.numel()
        scale = self.scales_and_zeros[..., 0].t()  # [Np, K / group]
        self._scale = scale.contiguous()[..., None]  # [Np, K / group, 1]
        self._offset = (self.scales_and_zeros[..., 1].t() - 8 * scale).contiguous()[..., None]  # zero - 8 * scale

    @classmethod
    def quantize(cls, w: torch.Tensor, group_size: int = INT4_GROUP) -> Int4Weight:
        n, k = w.shape
        padded = -(-n // INT4_N_MULTIPLE) * INT4_N_MULTIPLE
        full = torch.zeros(padded, k)
        full[:n] = w.detach().float()
        groups = full.reshape(padded, k // group_size, group_size)
        lo, hi = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15.0).clamp(min=1e-6)
        q = torch.round((groups - lo) / scale).clamp(0, 15).to(torch.uint8).reshape(padded, k)
        zero = lo + 8.0 * scale
        return cls(q[:, 0::2] | (q[:, 1::2] << 4), torch.cat([scale, zero], dim=-1).transpose(0, 1), group_size, n)

    def dequantized(self) -> torch.Tensor:
        """The weight `[Np, K]` in bfloat16 (padding rows included)."""
        n = self.portable.shape[0]
        q = torch.stack([self.portable & 0x0F, self.portable >> 4], dim=-1).view(n, -1, self.group_size)
        return q.to(torch.bfloat16).mul_(self._scale).add_(self._offset).view(n, -1)  # in place: 2x addcmul's speed

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        xb = x if x.dtype == torch.bfloat16 else x.to(torch.bfloat16)
        if x.shape[0] > INT4_KERNEL_ROWS:
            y = F.linear(xb, self.dequantized())
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(xb.contiguous(), self.packed, self.group_size,
                                                           self.scales_and_zeros)
        if self.padded:
            y = y[:, :self.out_features]
        return y if y.dtype == x.dtype else y.to(x.dtype)  # type: ignore[no-any-return]


def make_weight(w: torch.Tensor, fmt: str) -> LinearWeight:
    """`w [N, K]` in format `fmt`; a layer the int8 / int4 kernels cannot take falls back (int4 -> int8 ->
    bfloat16)."""
    k = w.shape[1]
    if fmt == "int4":
        if k % INT4_GROUP == 0 and k % 2 == 0:
            return Int4Weight.quantize(w)
        fmt = "int8"
    if fmt == "int8":
        if k % INT8_BF16_K_MULTIPLE == 0:
            return Int8Weight.quantize(w)
        fmt = "bfloat16"
    if fmt == "float32":
        return DenseWeight(w.detach() if w.dtype == torch.float32 else w.detach().float())
    if fmt == "bfloat16":
        return DenseWeight(w.detach().to(torch.bfloat16))
    raise ValueError(f"unknown weight format {fmt!r}")


def from_module(module: Any, fmt: str) -> LinearWeight:
    """The weight of an nn.Linear (converted to `fmt`) or of infopt's Int8 / Int4WeightOnlyLinear (used as
    quantized, whatever `fmt` says: its codes are the only weights there are)."""
    if isinstance(module, Int8WeightOnlyLinear):
        _no_bias(module)
        return Int8Weight(module.weight_int8.detach(), module.scales.detach())
    if isinstance(module, Int4WeightOnlyLinear):
        _no_bias(module)
        return Int4Weight(module.weight_int4.detach(), module.scales_and_zeros.detach(), module.group_size,
                          module.out_features)
    if isinstance(module, torch.nn.Linear):
        _no_bias(module)
        return make_weight(module.weight, fmt)
    raise NotApplicable(f"The engine cannot run a linear layer of type {type(module).__name__}.",
                        "serve this model with the plain generation loop.")


def _no_bias(module: Any) -> None:
    if getattr(module, "bias", None) is not None:
        raise NotApplicable("The engine supports Llama models with no biases only.",
                            "serve this model with the plain generation loop.")


def fuse(parts: Sequence[LinearWeight]) -> LinearWeight | None:
    """One weight computing all `parts` (same input) side by side, or None when they do not fuse (mixed formats,
    int4 padding, other int4 groups)."""
    first = parts[0]
    if all(isinstance(p, DenseWeight) for p in parts):
        dense = [p.w for p in parts if isinstance(p, DenseWeight)]
        if len({w.dtype for w in dense}) == 1:
            return DenseWeight(torch.cat(dense, dim=0))
    elif all(isinstance(p, Int8Weight) for p in parts):
        i8 = [p for p in parts if isinstance(p, Int8Weight)]
        return Int8Weight(torch.cat([p.codes for p in i8]), torch.cat([p.scales for p in i8]))
    elif all(isinstance(p, Int4Weight) and not p.padded for p in parts) and isinstance(first, Int4Weight):
        i4 = [p for p in parts if isinstance(p, Int4Weight)]
        if len({p.group_size for p in i4}) == 1:
            return Int4Weight(torch.cat([p.portable for p in i4]), torch.cat([p.scales_and_zeros for p in i4], 1),
                              first.group_size, sum(p.out_features for p in i4))
    return None
