"""Fine-tune a sequence classifier on labelled texts (AdamW, linear warm-up and decay: `optimizer_steps`)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from infopt.data import TextDataset
from infopt.errors import UserError
from infopt.train._config import FinetuneConfig
from infopt.train._loop import AdamWSchedule, epoch_batches, optimizer_steps

__all__ = ["FinetuneConfig", "LossFn", "finetune", "length_grouped_batches"]

LossFn = Callable[[torch.Tensor, torch.Tensor, list[int]], torch.Tensor]
"""(student logits [B, C], labels [B], dataset indices of the batch) -> scalar loss.

With `finetune(..., full_output=True)` the first argument is the model's whole output object instead
(`.logits`, and `.hidden_states` / `.attentions` when `model_kwargs` asks for them)."""


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Shuffled batches of indices whose texts have similar lengths, so little padding is computed."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * 50
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    yield from batches


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, _: list[int]) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def finetune(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    data: TextDataset,
    config: FinetuneConfig | None = None,
    loss_fn: LossFn = _cross_entropy,
    desc: str = "fine-tune",
    *,
    extra_parameters: Iterable[torch.nn.Parameter] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    full_output: bool = False,
) -> torch.nn.Module:
    """Train `model` (a *ForSequenceClassification module) in place on `data`; returns it in eval mode.

    `extra_parameters` are optimized alongside the model's (e.g. the projections of feature distillation);
    `model_kwargs` are passed to every forward call (e.g. `output_hidden_states=True`); `full_output` hands
    `loss_fn` the whole output object instead of the logits.
    """
    if len(data) == 0:
        raise UserError("The training data is empty.", "give at least one labelled example.")
    config = config or FinetuneConfig()
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    enc = tokenizer(data.texts, truncation=True, max_length=config.max_length)
    lengths = [len(ids) for ids in enc["input_ids"]]
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    total = max(1, round(steps_per_epoch * config.epochs))
    kwargs, batch_size = dict(model_kwargs or {}), config.batch_size

    def step(idx: list[int]) -> torch.Tensor:
        batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in enc}, return_tensors="pt")
        labels = torch.tensor([data.labels[i] for i in idx])
        out = model(**batch, **kwargs)
        return loss_fn(out if full_output else out.logits, labels, idx)

    model.train()
    optimizer_steps(
        [*model.parameters(), *extra_parameters], total, AdamWSchedule.of(config),
        epoch_batches(lambda: length_grouped_batches(lengths, batch_size, rng)), step, desc,
    )
    return model.eval()
