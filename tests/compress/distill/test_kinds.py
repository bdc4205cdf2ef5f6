"""Feature, relation and attention terms, and the multi-teacher soft-target mix."""

from __future__ import annotations

import pytest
import torch

from infopt.compress.distill import attention_loss, feature_loss, mix_soft_targets, relation_loss, uniform_layer_map
from infopt.compress.distill._kinds import projections


def test_feature_loss_is_zero_for_identical_features_through_identity_projections() -> None:
    x = [torch.randn(4, 8), torch.randn(4, 8)]
    maps = projections(8, 8, 2)
    assert feature_loss(x, x, maps).item() == pytest.approx(0.0, abs=1e-10)
    assert feature_loss(x, [v + 1 for v in x], maps).item() == pytest.approx(1.0, rel=1e-5)


def test_feature_projection_bridges_widths_and_learns() -> None:
    torch.manual_seed(0)
    s = torch.randn(32, 4)
    t = s @ torch.randn(4, 6) + 0.5
    maps = projections(4, 6, 1)
    opt = torch.optim.Adam(maps.parameters(), lr=0.05)
    first = feature_loss([s], [t], maps).item()
    for _ in range(200):
        opt.zero_grad()
        feature_loss([s], [t], maps).backward()
        opt.step()
    assert feature_loss([s], [t], maps).item() < 0.2 * first


def test_relation_loss_ignores_scale_and_rotation_but_not_structure() -> None:
    torch.manual_seed(0)
    t = torch.randn(10, 6)
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    assert relation_loss(3.0 * t @ q, t).item() == pytest.approx(0.0, abs=1e-5)
    assert relation_loss(torch.randn(10, 6), t).item() > 0.01
    assert relation_loss(torch.randn(10, 3), t).item() > 0  # different widths are fine


def test_relation_loss_sends_gradient_to_student_only() -> None:
    s, t = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    relation_loss(s, t).backward()
    assert s.grad is not None and t.grad is None


def test_attention_loss_is_kl_over_real_query_rows() -> None:
    a = torch.softmax(torch.randn(2, 4, 4), -1)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert attention_loss(a, a, mask).item() == pytest.approx(0.0, abs=1e-6)
    b = torch.softmax(torch.randn(2, 4, 4), -1)
    kl = (a * (a.log() - b.log())).sum(-1)
    expected = (kl[0].sum() + kl[1, :2].sum()) / 6
    assert attention_loss(b, a, mask).item() == pytest.approx(expected.item(), rel=1e-5)


def test_uniform_layer_map_ends_on_the_last_layer() -> None:
    assert uniform_layer_map(3, 6) == (2, 4, 6)
    assert uniform_layer_map(15, 30)[-1] == 30
    assert uniform_layer_map(6, 6) == (1, 2, 3, 4, 5, 6)


def test_mixed_soft_targets_are_the_weighted_mean_of_teacher_probabilities() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), 4 * torch.randn(5, 3, generator=g)
    for temp in (1.0, 4.0):
        mixed = mix_soft_targets([z1, z2], [0.25, 0.75], temp)
        want = 0.25 * torch.softmax(z1 / temp, -1) + 0.75 * torch.softmax(z2 / temp, -1)
        torch.testing.assert_close(torch.softmax(mixed / temp, -1), want)
    torch.testing.assert_close(torch.softmax(mix_soft_targets([z1], [1.0], 4.0) / 4, -1), torch.softmax(z1 / 4, -1))
