"""optimizer_steps: the schedule's factors, exactly `total` lazily drawn batches, clipping, and the batch streams."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from infopt.train import AdamWSchedule, FinetuneConfig, epoch_batches, optimizer_steps, refilled_batches


def test_warmup_then_linear_decay() -> None:
    f = AdamWSchedule(lr=1.0, warmup=0.2).factor(10)  # warm = 2 steps
    assert [f(s) for s in range(10)] == [0.5, 1.0, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8]
    assert AdamWSchedule(lr=1.0, warmup=0.0).factor(4)(0) == 1.0  # at least one warm-up step


def test_no_warmup_decays_from_the_first_step() -> None:
    f = AdamWSchedule(lr=1.0, warmup=None).factor(4)
    assert [f(s) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_schedule_of_a_finetune_config() -> None:
    config = FinetuneConfig(lr=3e-4, weight_decay=0.1, warmup=0.25)
    assert AdamWSchedule.of(config) == AdamWSchedule(lr=3e-4, weight_decay=0.1, warmup=0.25, clip=1.0)


def _counting(drawn: list[int]) -> Iterator[int]:
    for i in range(1000):
        drawn.append(i)
        yield i


def test_takes_exactly_total_batches_and_draws_no_more() -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    drawn: list[int] = []
    seen: list[int] = []

    def loss(i: int) -> torch.Tensor:
        seen.append(i)
        return (w - 1).pow(2).sum()

    assert optimizer_steps([w], 5, AdamWSchedule(lr=0.1), _counting(drawn), loss) == 5
    assert seen == drawn == [0, 1, 2, 3, 4]
    assert torch.all(w > 0)  # it moved towards the minimum
    assert w.grad is None  # gradients are set to None after each step
    assert optimizer_steps([w], 5, AdamWSchedule(lr=0.1), iter([1, 2]), loss) == 2  # a stream that runs out


def _reference(w: torch.nn.Parameter, total: int, lr: float, clip: float | None) -> None:
    """The loop as finetune / recovery / distillation wrote it before optimizer_steps."""
    opt = torch.optim.AdamW([w], lr=lr, weight_decay=0.01)
    warm = max(1, int(total * 0.5))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    for s in range(total):
        (w * (s + 1) * 10).pow(2).sum().backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([w], clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("clip", [1.0, None])
def test_bit_identical_to_the_hand_written_loop(clip: float | None) -> None:
    a = torch.nn.Parameter(torch.linspace(-1, 1, 6))
    b = torch.nn.Parameter(a.detach().clone())
    _reference(a, 7, 0.05, clip)
    schedule = AdamWSchedule(lr=0.05, weight_decay=0.01, warmup=0.5, clip=clip)
    optimizer_steps([b], 7, schedule, iter(range(7)), lambda s: (b * (s + 1) * 10).pow(2).sum(), desc="test")
    assert torch.equal(a, b)


def test_clipping_bounds_the_gradient() -> None:
    w = torch.nn.Parameter(torch.zeros(3))
    norms: list[float] = []

    def before_step(*_: object) -> None:
        assert w.grad is not None
        norms.append(float(w.grad.norm()))

    def loss(_: int) -> torch.Tensor:
        return (torch.tensor([300.0, 400.0, 0.0]) * w).sum()  # gradient norm 500

    handle = register_optimizer_step_pre_hook(before_step)
    try:
        optimizer_steps([w], 1, AdamWSchedule(lr=0.1, clip=1.0), iter([0]), loss)
        optimizer_steps([w], 1, AdamWSchedule(lr=0.1, clip=None), iter([0]), loss)
    finally:
        handle.remove()
    assert norms == [pytest.approx(1.0), pytest.approx(500.0)]


def test_epoch_batches_draw_each_order_when_the_epoch_starts() -> None:
    rng = random.Random(0)
    calls: list[int] = []

    def epoch() -> list[list[int]]:
        calls.append(1)
        order = list(range(5))
        rng.shuffle(order)
        return [order[:3], order[3:]]

    stream = epoch_batches(epoch)
    first = [next(stream), next(stream)]
    assert len(calls) == 1 and sorted(first[0] + first[1]) == list(range(5))
    next(stream)
    assert len(calls) == 2
    assert list(epoch_batches(lambda: [])) == []  # an empty epoch ends the stream


def test_refilled_batches_carry_the_rest_over() -> None:
    perms = iter([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14]])
    stream = refilled_batches(3, lambda: next(perms))
    assert [next(stream) for _ in range(4)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    short = refilled_batches(4, lambda: [0, 1])  # one refill per batch, as before: short batches
    assert [next(short) for _ in range(2)] == [[0, 1], [0, 1]]
