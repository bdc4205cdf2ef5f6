"""Perplexity through the engine's own runner, so each weight format (float32, bfloat16, int8, int4) is scored by
the very forward that serves it.

    blocks = text_blocks(tokenizer, count=8, block=256)          # the bundled news corpus, fixed
    runner_perplexity(model, blocks, weights="int8", dtype="bfloat16")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from infopt.serve.engine._auto import resolve_weights
from infopt.serve.engine.model import LlamaRunner
from infopt.serve.engine.scheduler import ScheduledSeq, SchedulerOutput

__all__ = ["runner_logits", "runner_perplexity", "text_blocks"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def text_blocks(tokenizer: Any, count: int = 8, block: int = 256, source: str = "news") -> list[list[int]]:
    """`count` blocks of `block` token ids from a bundled corpus (texts in their order: the same every run)."""
    from infopt.data import load_text_corpus, token_blocks

    texts = load_text_corpus(source, limit=None)[: count * 4]
    return [list(map(int, row)) for row in token_blocks(tokenizer, texts, block, count).tolist()]


def runner_logits(runner: LlamaRunner, token_ids: Sequence[int]) -> torch.Tensor:
    """The logits `[T, V]` (fp32) of every position of `token_ids`, prefilled in one step into blocks
    0, 1, ... of the runner's pool (which must hold them; what the pool held there is overwritten)."""
    bs = runner.block_size
    blocks = -(-len(token_ids) // bs)
    if blocks > runner.num_blocks:
        raise ValueError(f"{len(token_ids)} tokens need {blocks} KV blocks; the runner has {runner.num_blocks}")
    seq = ScheduledSeq("perplexity", list(token_ids), 0, list(range(blocks)), len(token_ids))
    return runner.execute(SchedulerOutput([seq]))


def runner_perplexity(model: torch.nn.Module, blocks: Sequence[Sequence[int]], weights: str = "float32",
                      dtype: str = "float32") -> float:
    """exp(mean negative log-likelihood) of every next token of `blocks`, through a runner with `weights`."""
    longest = max(len(b) for b in blocks)
    block_size = 16
    runner = LlamaRunner(model, -(-longest // block_size), block_size, _DTYPES[dtype],
                         resolve_weights(weights, model))
    total, count = 0.0, 0
    for ids in blocks:
        logits = runner_logits(runner, ids)[:-1]  # [T - 1, V]
        target = torch.tensor(ids[1:])
        total += float(F.cross_entropy(logits, target, reduction="sum"))
        count += len(ids) - 1
    return math.exp(total / count)
