"""The response-based loss, checked against an independent computation, including the T^2 gradient scaling."""

from __future__ import annotations

import math

import pytest
import torch

from infopt.compress.distill import DistillConfig, response_kd_loss, soft_kl
from infopt.errors import InfoptError


def _reference(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, temp: float, alpha: float) -> float:
    """Plain-Python: alpha * T^2 * mean_i sum_c p_t log(p_t / p_s) + (1 - alpha) * mean_i -log softmax(s)_y."""
    def softmax(row: list[float], tt: float) -> list[float]:
        m = max(x / tt for x in row)
        e = [math.exp(x / tt - m) for x in row]
        return [v / sum(e) for v in e]

    kl = ce = 0.0
    for srow, trow, label in zip(s.tolist(), t.tolist(), y.tolist(), strict=True):
        ps, pt = softmax(srow, temp), softmax(trow, temp)
        kl += sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True))
        ce += -math.log(softmax(srow, 1.0)[label])
    n = len(y)
    return alpha * temp**2 * kl / n + (1 - alpha) * ce / n


@pytest.mark.parametrize(("temp", "alpha"), [(4.0, 0.5), (1.0, 0.5), (2.5, 0.9), (4.0, 0.0), (4.0, 1.0), (0.5, 0.3)])
def test_matches_an_independent_computation(temp: float, alpha: float) -> None:
    g = torch.Generator().manual_seed(1)
    s, t = 3 * torch.randn(16, 5, generator=g, dtype=torch.float64), 3 * torch.randn(16, 5, generator=g)
    y = torch.randint(0, 5, (16,), generator=g)
    got = response_kd_loss(s, t, y, temperature=temp, alpha=alpha).item()
    assert got == pytest.approx(_reference(s, t, y, temp, alpha), rel=1e-5, abs=1e-6)


def test_defaults_are_t4_alpha_half() -> None:
    g = torch.Generator().manual_seed(2)
    s, t, y = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g), torch.randint(0, 3, (8,), generator=g)
    assert response_kd_loss(s, t, y).item() == pytest.approx(_reference(s, t, y, 4.0, 0.5), rel=1e-5)
    assert DistillConfig().temperature == 4.0 and DistillConfig().alpha == 0.5


@pytest.mark.parametrize("temp", [1.0, 2.0, 4.0, 8.0])
def test_soft_term_gradient_is_t_times_prob_difference(temp: float) -> None:
    """d/dz_s [T^2 KL(P_T || P_S)] = T (P_S - P_T) / B: the T^2 factor keeps soft-target gradients O(1/T)."""
    g = torch.Generator().manual_seed(3)
    s = torch.randn(6, 4, generator=g, dtype=torch.float64).requires_grad_()
    t = torch.randn(6, 4, generator=g, dtype=torch.float64)
    soft_kl(s, t, temp).backward()
    expected = temp * (torch.softmax(s.detach() / temp, -1) - torch.softmax(t / temp, -1)) / 6
    assert s.grad is not None
    torch.testing.assert_close(s.grad.double(), expected, rtol=1e-5, atol=1e-7)


def test_full_gradient_combines_both_terms() -> None:
    g = torch.Generator().manual_seed(4)
    s = torch.randn(5, 3, generator=g, dtype=torch.float64).requires_grad_()
    t = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0])
    temp, alpha = 4.0, 0.3
    response_kd_loss(s, t, y, temp, alpha).backward()
    p = torch.softmax(s.detach(), -1)
    hard = (p - torch.nn.functional.one_hot(y, 3)) / 5
    soft = temp * (torch.softmax(s.detach() / temp, -1) - torch.softmax(t / temp, -1)) / 5
    assert s.grad is not None
    torch.testing.assert_close(s.grad.double(), alpha * soft + (1 - alpha) * hard, rtol=1e-5, atol=1e-7)


def test_teacher_gets_no_gradient_and_kl_is_zero_when_equal() -> None:
    t = torch.randn(4, 3, requires_grad=True)
    assert soft_kl(t.detach().clone(), t, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    loss = response_kd_loss(torch.randn(4, 3, requires_grad=True), t, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert t.grad is None


def test_token_level_shapes_and_ignore_index() -> None:
    """[B, T, V] logits work (causal LMs); label -100 drops a token from the hard term only."""
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)
    y = torch.tensor([[1, 2, -100], [0, 6, 3]])
    flat = response_kd_loss(s.reshape(6, 7)[[0, 1, 3, 4, 5]], t.reshape(6, 7)[[0, 1, 3, 4, 5]],
                            y.reshape(6)[[0, 1, 3, 4, 5]], 4.0, 0.0)
    assert response_kd_loss(s, t, y, 4.0, 0.0).item() == pytest.approx(flat.item(), rel=1e-6)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_outside_unit_interval_is_a_clear_error(alpha: float) -> None:
    with pytest.raises(InfoptError, match="alpha"):
        response_kd_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([0, 1]), alpha=alpha)
    with pytest.raises(InfoptError, match="alpha"):
        DistillConfig(alpha=alpha)


@pytest.mark.parametrize("temp", [0.0, -1.0, float("inf")])
def test_non_positive_temperature_is_a_clear_error(temp: float) -> None:
    with pytest.raises(InfoptError, match="temperature"):
        response_kd_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([0, 1]), temperature=temp)
    with pytest.raises(InfoptError, match="temperature"):
        DistillConfig(temperature=temp)


def test_different_label_counts_are_a_clear_error() -> None:
    with pytest.raises(InfoptError, match="same label set"):
        response_kd_loss(torch.zeros(2, 3), torch.zeros(2, 2), torch.tensor([0, 1]))


def test_labels_needed_unless_alpha_is_one() -> None:
    s, t = torch.randn(3, 2), torch.randn(3, 2)
    assert response_kd_loss(s, t, None, alpha=1.0).item() >= 0
    with pytest.raises(InfoptError, match="labels"):
        response_kd_loss(s, t, None, alpha=0.5)
