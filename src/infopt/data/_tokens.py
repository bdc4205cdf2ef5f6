"""Plain texts as one stream of token ids, and that stream cut into equal blocks (causal-LM training, perplexity)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["joined_tokens", "token_blocks"]


def joined_tokens(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], limit: int | None = None, seed: int | None = None
) -> list[int]:
    """The texts' token ids (no special tokens), each text followed by EOS when the tokenizer has one.

    Texts in their order, or shuffled with `seed`; stops after the text that brings the count to `limit` or more
    (the last text is kept whole: cut the list to `limit` if you need exactly that many).
    """
    order = list(range(len(texts)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for i in order:
        ids += tokenizer(texts[i], add_special_tokens=False)["input_ids"]
        if eos is not None:
            ids.append(eos)
        if limit is not None and len(ids) >= limit:
            break
    return ids


def token_blocks(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], block: int, count: int | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """[n, block] token ids: `joined_tokens(texts, seed=seed)` cut into full blocks, at most `count` of them.

    n is 0 when the texts hold fewer than `block` tokens.
    """
    ids = joined_tokens(tokenizer, texts, None if count is None else block * count, seed)
    n = len(ids) // block if count is None else min(count, len(ids) // block)
    return torch.tensor(ids[: n * block], dtype=torch.long).view(n, block)
