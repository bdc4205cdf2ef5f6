"""How much each head, FFN neuron and layer matters: weight norms, first-order Taylor, block influence."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from infopt.compress.prune._common import text_batches
from infopt.compress.prune._families import Family, linear_at
from infopt.data import TextDataset
from infopt.errors import NotApplicable, UserError
from infopt.models import eval_mode, forward_hooks

__all__ = ["layer_influence", "magnitude_importance", "taylor_importance"]

Scores = tuple[list[torch.Tensor], list[torch.Tensor]]
"""Per block: attention-unit scores [units] and FFN-neuron scores [neurons]."""


def _unit_sums(
    block: nn.Module, family: Family, head_dim: int, value: Callable[[nn.Linear], torch.Tensor], inputs: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum `value(linear)` (shaped like its weight) over the slices belonging to each head unit / neuron:
    the unit's output columns of o / down, and (if `inputs`) its rows of q, k, v / up, gate."""
    units, _ = family.groups(block, head_dim)
    o = value(linear_at(block, family.o))
    attn = o.reshape(o.shape[0], units, -1).sum((0, 2))
    ffn = value(linear_at(block, family.ffn_out)).sum(0)
    if inputs:
        for path in (family.q, family.k, family.v):
            attn = attn + value(linear_at(block, path)).reshape(units, -1).sum(1)
        for path in family.ffn_in:
            ffn = ffn + value(linear_at(block, path)).sum(1)
    return attn.double(), ffn.double()


@torch.no_grad()
def magnitude_importance(model: nn.Module, family: Family) -> Scores:
    """L2 norm of all the weights that belong to each head unit / neuron (q, k, v, o slices; in and out)."""
    head_dim = family.head_dim(model.config)
    sums = [_unit_sums(b, family, head_dim, lambda lin: lin.weight.float() ** 2) for b in family.block_list(model)]
    return [a.sqrt() for a, _ in sums], [f.sqrt() for _, f in sums]


def _loss_batches(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, task: str, texts: Sequence[str],
    labelled: TextDataset | None, max_length: int, batch_size: int = 16,
) -> Iterator[torch.Tensor]:
    """Losses to differentiate: cross-entropy on labels (or the model's own predictions), or the LM loss."""
    if task == "causal-lm":
        for batch in text_batches(tokenizer, texts, batch_size, max_length):
            targets = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            yield model(**batch, labels=targets).loss
        return
    if task != "classification":
        raise NotApplicable(f"Taylor importance needs a loss; a {task} model has none.", "use importance='magnitude'.")
    labels: list[int] = []
    if labelled is not None:
        texts, labels = labelled.texts, labelled.labels
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        logits = model(**batch).logits
        target = torch.tensor(labels[start : start + batch_size]) if labels else logits.detach().argmax(-1)
        yield F.cross_entropy(logits, target)


def taylor_importance(
    model: nn.Module, family: Family, tokenizer: PreTrainedTokenizerBase, task: str, texts: Sequence[str],
    labelled: TextDataset | None, max_length: int,
) -> Scores:
    """Group Taylor importance (Molchanov et al. 2019): |sum of grad x weight over all the unit's weights|.

    A unit's weights are its rows of q, k, v (up, gate) and its columns of o (down); the sum is taken per
    calibration batch and the absolute values are summed over batches. (Scoring only the o / down columns, the
    exact first-order estimate for removing the unit, did no better: 83.7% vs 84.1% on the teacher, one trial.)
    """
    if not texts and labelled is None:
        raise UserError("Taylor importance needs calibration data.", "pass calibration texts or a train dataset.")
    head_dim = family.head_dim(model.config)
    blocks = family.block_list(model)
    attn = [torch.zeros(family.groups(b, head_dim)[0], dtype=torch.float64) for b in blocks]
    ffn = [torch.zeros(family.neurons(b), dtype=torch.float64) for b in blocks]
    with eval_mode(model):
        try:
            with torch.enable_grad():
                for loss in _loss_batches(model, tokenizer, task, texts, labelled, max_length):
                    model.zero_grad(set_to_none=True)
                    loss.backward()
                    with torch.no_grad():
                        for i, b in enumerate(blocks):
                            a, f = _unit_sums(b, family, head_dim, _grad_times_weight)
                            attn[i] += a.abs()
                            ffn[i] += f.abs()
        finally:
            model.zero_grad(set_to_none=True)
    return attn, ffn


def _grad_times_weight(lin: nn.Linear) -> torch.Tensor:
    grad = lin.weight.grad
    return torch.zeros_like(lin.weight) if grad is None else (grad * lin.weight).float()


@torch.no_grad()
def layer_influence(
    model: nn.Module, family: Family, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> torch.Tensor:
    """Block influence (ShortGPT): mean over real tokens of 1 - cos(block input, block output), per block."""
    if not texts:
        raise UserError("Choosing layers to remove needs calibration texts.",
                          "pass calibration texts, or name the layers (layers=(4, 5)).")
    blocks = family.block_list(model)
    total = torch.zeros(len(blocks), dtype=torch.float64)
    inputs: dict[int, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}

    def pre(i: int) -> Callable[..., None]:
        def hook(_: nn.Module, args: tuple, kwargs: dict) -> None:
            inputs[i] = args[0] if args else kwargs["hidden_states"]

        return hook

    def post(i: int) -> Callable[..., None]:
        def hook(_: nn.Module, args: tuple, kwargs: dict, out: object) -> None:
            h_out = out[0] if isinstance(out, tuple) else out
            if not isinstance(h_out, torch.Tensor):
                raise TypeError(f"block {i} returned {type(h_out).__name__}, not hidden states")
            mask = state["mask"].bool()
            cos = F.cosine_similarity(inputs[i].float(), h_out.float(), dim=-1)  # [B, T]
            total[i] += (1 - cos)[mask].double().sum()

        return hook

    hooks = forward_hooks([(b, pre(i)) for i, b in enumerate(blocks)], [(b, post(i)) for i, b in enumerate(blocks)],
                          with_kwargs=True)
    tokens = 0
    with hooks, eval_mode(model):
        for batch in text_batches(tokenizer, texts, 8, max_length):
            state["mask"] = batch["attention_mask"]
            tokens += int(batch["attention_mask"].sum())
            model(**batch)
    return total / max(tokens, 1)
