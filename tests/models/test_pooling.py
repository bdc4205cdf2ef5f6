"""masked_mean: the mean over real tokens, and mean_pool built on it."""

from __future__ import annotations

import pytest
import torch

from infopt.models import mean_pool
from infopt.models._pooling import masked_mean


def test_masked_mean_skips_padding() -> None:
    h = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(h, torch.tensor([[1, 1, 0]])).item() == pytest.approx(2.0)
    assert masked_mean(h, torch.tensor([[True, False, True]])).item() == pytest.approx(50.5)


def test_a_row_without_tokens_gives_zeros() -> None:
    h = torch.ones(2, 3, 4)
    out = masked_mean(h, torch.tensor([[1, 0, 0], [0, 0, 0]]))
    assert torch.equal(out, torch.tensor([[1.0] * 4, [0.0] * 4]))
    assert torch.equal(masked_mean(h, torch.zeros(2, 3), floor=1e-9), torch.zeros(2, 4))


def test_mean_pool_is_the_normalised_masked_mean() -> None:
    g = torch.Generator().manual_seed(0)
    h, mask = torch.randn(3, 5, 4, generator=g), torch.tensor([[1, 1, 0, 0, 0], [1] * 5, [1, 0, 0, 0, 0]])
    pooled = mean_pool(h, mask)
    assert torch.allclose(pooled.norm(dim=-1), torch.ones(3))
    assert torch.allclose(pooled, torch.nn.functional.normalize(masked_mean(h, mask), dim=-1))
