"""Fine-tune a sequence classifier on labelled texts (AdamW, linear warm-up and decay)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from infopt.data import TextDataset
from infopt.errors import UserError
from infopt.train._config import FinetuneConfig

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
    params = [*model.parameters(), *extra_parameters]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warm = max(1, int(total * config.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    model.train()
    step = 0
    bar = tqdm(total=total, desc=desc, unit="step", leave=False)
    while step < total:
        for idx in length_grouped_batches(lengths, config.batch_size, rng):
            batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in enc}, return_tensors="pt")
            labels = torch.tensor([data.labels[i] for i in idx])
            out = model(**batch, **(model_kwargs or {}))
            loss = loss_fn(out if full_output else out.logits, labels, idx)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step >= total:
                break
    bar.close()
    return model.eval()
