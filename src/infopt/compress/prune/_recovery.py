"""Recovery: a short fine-tune of the pruned model, distilling from the unpruned one when possible."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from infopt.compress.distill import response_kd_loss
from infopt.compress.prune._common import keep_masks
from infopt.compress.prune._configs import RecoveryConfig
from infopt.data import TextDataset, token_blocks
from infopt.errors import NotApplicable, UserError
from infopt.train import AdamWSchedule, FinetuneConfig, finetune, optimizer_steps, refilled_batches

__all__ = ["recover"]

KdLoss = Callable[..., torch.Tensor]


def _classifier(
    student: nn.Module, teacher: nn.Module, tokenizer: PreTrainedTokenizerBase, config: RecoveryConfig,
    train: TextDataset, epochs: float, kd: KdLoss | None,
) -> None:
    settings = FinetuneConfig(epochs=epochs, batch_size=config.batch_size, lr=config.lr,
                              max_length=config.max_length, seed=config.seed)
    if kd is None:
        finetune(student, tokenizer, train, settings, desc="recovering the pruned model")
        return
    distil = kd

    def distilled(logits: torch.Tensor, labels: torch.Tensor, idx: list[int]) -> torch.Tensor:
        batch = tokenizer([train.texts[i] for i in idx], padding=True, truncation=True,
                          max_length=config.max_length, return_tensors="pt")
        with torch.no_grad():
            target = teacher(**batch).logits
        return distil(logits, target, labels, temperature=config.temperature, alpha=config.alpha)

    finetune(student, tokenizer, train, settings, loss_fn=distilled, desc="recovering the pruned model")


def _causal_lm(
    student: nn.Module, teacher: nn.Module, tokenizer: PreTrainedTokenizerBase, config: RecoveryConfig,
    texts: Sequence[str], epochs: float, kd: KdLoss | None,
) -> None:
    blocks = token_blocks(tokenizer, texts, config.max_length)
    if len(blocks) == 0:
        raise UserError(f"The recovery texts hold fewer than {config.max_length} tokens.",
                        "give more text for recovery.")
    total = max(1, round(math.ceil(len(blocks) / config.batch_size) * epochs))
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)

    def step(idx: list[int]) -> torch.Tensor:
        ids = blocks[idx]
        logits = student(input_ids=ids).logits[:, :-1]
        labels = ids[:, 1:]
        if kd is None:
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
        with torch.no_grad():
            target = teacher(input_ids=ids).logits[:, :-1]
        return kd(logits, target, labels, temperature=config.temperature, alpha=config.alpha)

    student.train()
    batches = refilled_batches(config.batch_size, lambda: rng.sample(range(len(blocks)), len(blocks)))
    optimizer_steps(student.parameters(), total, AdamWSchedule(lr=config.lr, weight_decay=0.0, warmup=0.06),
                    batches, step)
    student.eval()


def recover(
    student: nn.Module,
    teacher: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    config: RecoveryConfig,
    train: TextDataset | None,
    texts: Sequence[str],
    masks: dict[nn.Parameter, torch.Tensor] | None = None,
    share: float = 1.0,
) -> dict[str, object]:
    """Fine-tune `student` in place for `share` of `config.epochs`; pruned weights (masks) stay zero."""
    kd: KdLoss | None = response_kd_loss if config.distill else None
    epochs = config.epochs * share
    teacher.eval()
    t0 = time.perf_counter()
    with keep_masks(masks or {}):
        if task == "classification":
            if train is None or not train.labels:
                raise UserError("Recovering a pruned classifier needs labelled training data.",
                                  "pass train=<TextDataset> (CLI: --data), or recovery=None.")
            _classifier(student, teacher, tokenizer, config, train, epochs, kd)
        elif task == "causal-lm":
            source = train.texts if train is not None else list(texts)
            _causal_lm(student, teacher, tokenizer, config, source, epochs, kd)
        else:
            raise NotApplicable(f"Recovery fine-tuning supports classifiers and causal LMs, not {task} models.",
                              "prune without recovery (recovery=None).")
    return {"epochs": round(epochs, 4), "distilled": kd is not None, "seconds": round(time.perf_counter() - t0, 1)}
