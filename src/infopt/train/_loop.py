"""The one optimizer loop: AdamW with a linear learning-rate schedule, gradient clipping, a progress bar.

Callers seed torch and build their own stream of batches; the loop draws exactly `total` batches from it.
Under torchrun every rank draws the same global batches and trains on its part of each (`_distributed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
from tqdm.auto import tqdm

from infopt.train import _distributed as ddp
from infopt.train._config import FinetuneConfig

__all__ = ["AdamWSchedule", "epoch_batches", "optimizer_steps", "refilled_batches"]

T = TypeVar("T")


@dataclass(frozen=True)
class AdamWSchedule:
    """AdamW settings and the learning-rate factor of each step."""

    lr: float
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup: float | None = 0.06
    """Fraction of the steps (at least one) with a linear warm-up, then a linear decay to zero at the last step.
    None: no warm-up, the factor falls linearly from 1 at the first step (1 - step / total)."""
    clip: float | None = 1.0
    """Largest gradient norm over all parameters; None: no clipping."""

    @classmethod
    def of(cls, config: FinetuneConfig) -> AdamWSchedule:
        """The schedule of a fine-tuning config (its lr, weight decay and warm-up; clipping at 1)."""
        return cls(lr=config.lr, weight_decay=config.weight_decay, warmup=config.warmup)

    def factor(self, total: int) -> Callable[[int], float]:
        """Step (0-based) -> multiplier of `lr`, for a run of `total` steps."""
        if self.warmup is None:
            return lambda s: max(0.0, 1 - s / total)
        warm = max(1, int(total * self.warmup))
        return lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))


def epoch_batches(epoch: Callable[[], Iterable[T]]) -> Iterator[T]:
    """The batches of `epoch()`, called again each time one epoch runs out (its order is drawn when it starts);
    ends if an epoch has no batches."""
    while True:
        empty = True
        for batch in epoch():
            empty = False
            yield batch
        if empty:
            return


def refilled_batches(batch_size: int, permutation: Callable[[], list[int]]) -> Iterator[list[int]]:
    """Batches of `batch_size` indices; once fewer than that are left, a fresh `permutation()` is appended."""
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            order += permutation()
        idx, order = order[:batch_size], order[batch_size:]
        yield idx


def _rank_loss(batch: object, loss_fn: Callable[[T], torch.Tensor]) -> torch.Tensor | None:
    """loss_fn on this rank's part of the global batch, backward run on it weighted by the part's share of the
    batch; returns the unweighted loss (None: no examples for this rank)."""
    if not isinstance(batch, list):
        raise TypeError("distributed training shards batches given as lists (of dataset indices)")
    part = ddp.shard(batch)
    if not part:
        return None
    loss = loss_fn(part)  # type: ignore[arg-type]  # a part of a batch is a batch
    (loss * (len(part) / len(batch))).backward()
    return loss


def optimizer_steps(
    params: Iterable[torch.nn.Parameter],
    total: int,
    schedule: AdamWSchedule,
    batches: Iterable[T],
    loss_fn: Callable[[T], torch.Tensor],
    desc: str | None = None,
) -> int:
    """`total` AdamW steps on `params`, one per batch drawn from `batches`; returns the steps taken.

    Each step: loss_fn(batch).backward(), clip, optimizer step, scheduler step, gradients set to None.
    With `desc` a progress bar shows the loss. Fewer steps are taken only if `batches` runs out.
    Under torchrun (2+ ranks) each rank starts from rank 0's values, runs loss_fn on its part of every batch
    (batches must be lists) and the gradients are summed over ranks before clipping: the step one process
    takes on the whole batch when loss_fn is a mean over examples. Other ranks seed dropout with seed + rank.
    """
    params = list(params)
    w = ddp.world()
    if w is not None:
        ddp.broadcast_parameters(params)
        if w.rank:
            torch.manual_seed(torch.initial_seed() + w.rank)
    opt = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule.factor(total))
    show = desc is not None and ddp.is_main()
    bar = tqdm(total=total, desc=desc, unit="step", leave=False) if show else None
    step = 0
    stream = iter(batches)
    while step < total:
        try:
            batch = next(stream)
        except StopIteration:
            break
        loss: torch.Tensor | None = None
        if w is None:
            loss = loss_fn(batch)
            loss.backward()
        else:
            error: Exception | None = None
            try:
                loss = _rank_loss(batch, loss_fn)
            except Exception as e:  # raised on every rank by sync_gradients
                error = e
            ddp.sync_gradients(params, error)
        if schedule.clip is not None:
            torch.nn.utils.clip_grad_norm_(params, schedule.clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if bar is not None:
            bar.update(1)
            if loss is not None:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    if bar is not None:
        bar.close()
    return step
