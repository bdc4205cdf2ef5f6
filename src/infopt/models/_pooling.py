"""Mean of token vectors over the real (unpadded) tokens."""

from __future__ import annotations

import torch

__all__ = ["masked_mean"]


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor, floor: float = 1.0) -> torch.Tensor:
    """[B, T, D] hidden states and a [B, T] 0/1 mask -> [B, D] mean over the real tokens.

    The token count is clamped to at least `floor`, so a row without real tokens gives zeros.
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=floor)
