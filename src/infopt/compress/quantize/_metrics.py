"""How much a quantized output differs from the float one."""

from __future__ import annotations

import math

import torch

__all__ = ["sqnr"]


def sqnr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - test)^2); inf if equal."""
    ref, out = reference.detach().double(), test.detach().double()
    noise = float((ref - out).pow(2).sum())
    signal = float(ref.pow(2).sum())
    return math.inf if noise == 0 else 10.0 * math.log10(signal / noise)
