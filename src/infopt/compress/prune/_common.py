"""Shared helpers: which Linear layers are pruned, calibration batches, and keeping pruned weights at zero."""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from infopt.errors import UserError

__all__ = ["keep_masks", "prunable_linears", "text_batches"]

_BLOCK = re.compile(r"\.(layer|layers|h|block|blocks)\.\d+\.")


def prunable_linears(model: nn.Module, exclude: Sequence[str] = ()) -> dict[str, nn.Linear]:
    """The nn.Linear layers inside the repeated transformer blocks, minus the `exclude` fnmatch patterns."""
    found = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
        and _BLOCK.search(f".{name}.")
        and not any(fnmatch.fnmatch(name, p) for p in exclude)
    }
    if not found:
        raise UserError(
            f"{type(model).__name__} has no Linear layers inside numbered transformer blocks to prune"
            + (f" (after excluding {', '.join(exclude)})." if exclude else "."),
            "prune a transformers model whose blocks are a ModuleList (e.g. BERT, Llama), or loosen `exclude`.",
        )
    return found


def text_batches(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], batch_size: int, max_length: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Right-padded batches {input_ids, attention_mask}; works for tokenizers without a pad token."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        ids = [i for i in (tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in chunk) if i]
        if not ids:
            continue
        width = max(map(len, ids))
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        yield {"input_ids": input_ids, "attention_mask": mask}


@contextlib.contextmanager
def keep_masks(masks: dict[nn.Parameter, torch.Tensor]) -> Iterator[None]:
    """While training inside, pruned weights get zero gradients (so AdamW leaves them at zero); re-zeroed on exit."""
    masks = {p: m.to(p.dtype) for p, m in masks.items()}
    handles = [p.register_hook(lambda g, m=m: g * m) for p, m in masks.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for p, m in masks.items():
                p.mul_(m)
