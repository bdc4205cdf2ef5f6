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

from infopt.compress.prune._common import keep_masks
from infopt.compress.prune._configs import RecoveryConfig
from infopt.data import TextDataset
from infopt.errors import NotApplicable, UserError
from infopt.train import FinetuneConfig, finetune

__all__ = ["kd_loss", "recover"]

KdLoss = Callable[..., torch.Tensor]


def kd_loss() -> KdLoss | None:
    """`infopt.compress.distill.response_kd_loss` if that module is installed, else None."""
    try:
        from infopt.compress.distill import response_kd_loss
    except ImportError:
        return None
    return response_kd_loss


def _classifier(
    student: nn.Module, teacher: nn.Module, tokenizer: PreTrainedTokenizerBase, config: RecoveryConfig,
    train: TextDataset, epochs: float, kd: KdLoss | None,
) -> None:
    def distilled(logits: torch.Tensor, labels: torch.Tensor, idx: list[int]) -> torch.Tensor:
        assert kd is not None
        batch = tokenizer([train.texts[i] for i in idx], padding=True, truncation=True,
                          max_length=config.max_length, return_tensors="pt")
        with torch.no_grad():
            target = teacher(**batch).logits
        return kd(logits, target, labels, temperature=config.temperature, alpha=config.alpha)

    settings = FinetuneConfig(epochs=epochs, batch_size=config.batch_size, lr=config.lr,
                              max_length=config.max_length, seed=config.seed)
    if kd is None:
        finetune(student, tokenizer, train, settings, desc="recovering the pruned model")
    else:
        finetune(student, tokenizer, train, settings, loss_fn=distilled, desc="recovering the pruned model")


def _blocks(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], length: int) -> torch.Tensor:
    """The texts' tokens, joined by EOS and cut into [N, length] blocks."""
    ids: list[int] = []
    for t in texts:
        ids += tokenizer(t, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
    n = len(ids) // length
    if n == 0:
        raise UserError(f"The recovery texts hold fewer than {length} tokens.", "give more text for recovery.")
    return torch.tensor(ids[: n * length]).view(n, length)


def _causal_lm(
    student: nn.Module, teacher: nn.Module, tokenizer: PreTrainedTokenizerBase, config: RecoveryConfig,
    texts: Sequence[str], epochs: float, kd: KdLoss | None,
) -> None:
    blocks = _blocks(tokenizer, texts, config.max_length)
    total = max(1, round(math.ceil(len(blocks) / config.batch_size) * epochs))
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)
    warm = max(1, int(0.06 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    student.train()
    order: list[int] = []
    for _ in range(total):
        if len(order) < config.batch_size:
            order += rng.sample(range(len(blocks)), len(blocks))
        idx, order = order[: config.batch_size], order[config.batch_size :]
        ids = blocks[idx]
        logits = student(input_ids=ids).logits[:, :-1]
        labels = ids[:, 1:]
        if kd is None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
        else:
            with torch.no_grad():
                target = teacher(input_ids=ids).logits[:, :-1]
            loss = kd(logits, target, labels, temperature=config.temperature, alpha=config.alpha)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
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
    kd = kd_loss() if config.distill else None
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
