"""Unstructured and N:M pruning: score every weight, zero the lowest, keep them at zero while recovering."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from infopt.compress.prune._common import prunable_linears, text_batches
from infopt.compress.prune._configs import UnstructuredConfig, WandaConfig, parse_pattern
from infopt.errors import UserError
from infopt.models import eval_mode, forward_hooks

__all__ = ["activation_norms", "apply_masks", "compute_masks", "prune_unstructured", "schedule"]


def schedule(sparsity: float, steps: int) -> list[float]:
    """Cubic gradual schedule (Zhu & Gupta 2017): sparsity after each of `steps` steps, ending at `sparsity`."""
    return [sparsity * (1 - (1 - k / steps) ** 3) for k in range(1, steps + 1)]


@torch.no_grad()
def activation_norms(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    linears: dict[str, nn.Linear],
    max_length: int,
    batch_size: int = 8,
) -> dict[str, torch.Tensor]:
    """L2 norm over all real (unpadded) calibration tokens of each input feature of each Linear: [in]."""
    if not texts:
        raise UserError("Wanda pruning needs calibration texts.", "pass calibration=[...] (32-128 short texts).")
    sums = {name: torch.zeros(lin.in_features, dtype=torch.float64) for name, lin in linears.items()}
    current: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().float()
            mask = current["mask"]
            if x.shape[:-1] == mask.shape:
                x = x[mask.bool()]
            sums[name] += x.reshape(-1, x.shape[-1]).pow(2).sum(0).double()

        return record

    with forward_hooks([(lin, hook(name)) for name, lin in linears.items()]), eval_mode(model):
        for batch in text_batches(tokenizer, texts, batch_size, max_length):
            current["mask"] = batch["attention_mask"]
            model(**batch)
    return {name: s.sqrt().float() for name, s in sums.items()}


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask of a 1-D or 2-D score tensor with the `k` lowest of each row (or of all) set to False."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k > 0:
        keep.scatter_(-1, scores.argsort(dim=-1, stable=True)[..., :k], False)
    return keep


def compute_masks(
    scores: dict[str, torch.Tensor], sparsity: float, scope: str, pattern: str | None
) -> dict[str, torch.Tensor]:
    """Keep-masks (True = kept) with `sparsity` of each row / matrix / all matrices zeroed, or N:M per row."""
    masks: dict[str, torch.Tensor] = {}
    if pattern is not None:
        n, m = parse_pattern(pattern)
        for name, s in scores.items():
            rows, cols = s.shape
            if cols % m:
                raise UserError(f"{name} has {cols} inputs, which is not a multiple of {m} (pattern {pattern}).",
                                  f"exclude it (exclude=['{name}']) or use unstructured sparsity.")
            masks[name] = _lowest(s.reshape(rows, cols // m, m), m - n).reshape(rows, cols)
        return masks
    if scope == "global":
        flat = torch.cat([s.flatten() for s in scores.values()])
        k = round(flat.numel() * sparsity)
        if k == 0:
            return {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
        threshold = flat.kthvalue(k).values
        return {name: s > threshold for name, s in scores.items()}
    for name, s in scores.items():
        if scope == "row":
            masks[name] = _lowest(s, round(s.shape[-1] * sparsity))
        else:
            masks[name] = _lowest(s.flatten(), round(s.numel() * sparsity)).reshape(s.shape)
    return masks


@torch.no_grad()
def apply_masks(linears: dict[str, nn.Linear], masks: dict[str, torch.Tensor]) -> None:
    for name, lin in linears.items():
        lin.weight.mul_(masks[name].to(lin.weight.dtype))


def prune_unstructured(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    config: UnstructuredConfig,
    texts: Sequence[str],
    recover: Callable[[dict[nn.Parameter, torch.Tensor], float], dict[str, object]] | None,
) -> dict[str, object]:
    """Prune `model` in place, step by step; `recover(masks, epochs_fraction)` fine-tunes between steps."""
    linears = prunable_linears(model, config.exclude)
    wanda = isinstance(config, WandaConfig)
    steps: list[dict[str, object]] = []
    masks: dict[str, torch.Tensor] = {}
    for target in schedule(config.sparsity, config.steps):
        with torch.no_grad():
            scores = {name: lin.weight.detach().abs().float() for name, lin in linears.items()}
        if wanda:
            norms = activation_norms(model, tokenizer, texts, linears, config.calibration_length)
            scores = {name: s * norms[name][None, :] for name, s in scores.items()}
        masks = compute_masks(scores, target, config.scope, config.pattern)
        apply_masks(linears, masks)
        step: dict[str, object] = {"sparsity": round(target, 4)}
        if recover is not None:
            params: dict[nn.Parameter, torch.Tensor] = {linears[n].get_parameter("weight"): m for n, m in masks.items()}
            step["recovery"] = recover(params, 1 / config.steps)
        steps.append(step)
    zeros = sum(int((lin.weight == 0).sum()) for lin in linears.values())
    total = sum(lin.weight.numel() for lin in linears.values())
    return {
        "pruned_linears": len(linears),
        "target_sparsity": config.sparsity,
        "achieved_sparsity": zeros / total,
        "pruned_weights": total,
        "steps": steps,
    }
