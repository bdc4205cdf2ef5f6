"""Packed batches of a BERT-family encoder: a batch's texts laid end to end in rows instead of padded.

Each text keeps its own position ids (0, 1, ...) and a block-diagonal 4-D attention mask lets its tokens attend only
to each other, so every text gets the vectors it gets alone; a batch of texts of mixed lengths then costs about its
real tokens instead of its count times the longest. Classification reads each text's [CLS] vector (pooler +
classifier); embeddings mean-pool each text's tokens.

    packed = pack([[101, 7592, 102], [101, 2204, 3185, 102]])    # token ids of tokenized texts, unpadded
    logits = packed_forward(model, "classification", packed)    # [N, C]: the same as the padded batch's
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import BertForSequenceClassification, BertModel, PreTrainedModel

__all__ = ["MIN_ROW", "Packed", "can_pack", "pack", "packed_forward"]

MIN_ROW = 64
"""The fewest tokens a row holds (rows are max(MIN_ROW, the longest text) wide): wider rows hold more short texts
but cost more attention per token (measured in benchmarks/batch_packing.py)."""


@dataclass(frozen=True)
class Packed:
    """One packed batch of N texts in R rows of T tokens."""

    input_ids: torch.Tensor
    """[R, T] token ids, 0 after a row's last text."""
    token_type_ids: torch.Tensor
    """[R, T] segment ids from the tokenizer (0 where it gave none)."""
    position_ids: torch.Tensor
    """[R, T] each token's position within its own text."""
    text: torch.Tensor
    """[R, T] the index (0..N-1) of the text each token belongs to; -1 for the row's padding."""
    starts: tuple[torch.Tensor, torch.Tensor]
    """([N] row, [N] column) of each text's first token (its [CLS])."""

    def attention_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """[R, 1, T, T] additive mask: 0 between tokens of one text (padding with padding), the dtype's min else."""
        same = self.text[:, None, :, None] == self.text[:, None, None, :]
        return torch.zeros(same.shape, dtype=dtype).masked_fill_(~same, torch.finfo(dtype).min)


def _rows(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Texts (indices) into rows of at most `width` tokens, first fit, longest first."""
    rows: list[list[int]] = []
    fill: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        r = next((r for r, used in enumerate(fill) if used + lengths[i] <= width), len(rows))
        if r == len(rows):
            rows.append([])
            fill.append(0)
        rows[r].append(i)
        fill[r] += lengths[i]
    return rows


def pack(items: Sequence[Sequence[int] | Mapping[str, Sequence[int]]], min_row: int = MIN_ROW) -> Packed:
    """Lay tokenized texts (token ids, or a tokenizer's unpadded `input_ids` / `token_type_ids`) end to end in rows."""
    encs = [dict(item) if isinstance(item, Mapping) else {"input_ids": item} for item in items]
    if not encs or any(not e["input_ids"] for e in encs):
        raise ValueError("pack needs at least one text, each with at least one token")
    lengths = [len(e["input_ids"]) for e in encs]
    rows = _rows(lengths, max(min_row, *lengths))
    width = max(sum(lengths[i] for i in row) for row in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    types, positions = torch.zeros_like(ids), torch.zeros_like(ids)
    text = torch.full_like(ids, -1)
    start_row, start_col = torch.zeros(len(encs), dtype=torch.long), torch.zeros(len(encs), dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            n, span = lengths[i], slice(at, at + lengths[i])
            ids[r, span] = torch.tensor(encs[i]["input_ids"])
            if "token_type_ids" in encs[i]:
                types[r, span] = torch.tensor(encs[i]["token_type_ids"])
            positions[r, span], text[r, span] = torch.arange(n), i
            start_row[i], start_col[i] = r, at
            at += n
    return Packed(ids, types, positions, text, (start_row, start_col))


def can_pack(model: Any, task: str) -> bool:
    """Whether `packed_forward` knows this model and task: a torch BERT sequence classifier (pruned ones too) or
    encoder (embedding) with absolute position embeddings. Whether it gives the padded outputs is for the caller to
    check (`LoadedModel.packs`)."""
    kinds: dict[str, type[PreTrainedModel]] = {"classification": BertForSequenceClassification, "embedding": BertModel}
    if task not in kinds or not isinstance(model, kinds[task]):
        return False
    return getattr(model.config, "position_embedding_type", "absolute") == "absolute"


def packed_forward(model: BertForSequenceClassification | BertModel, task: str, packed: Packed) -> torch.Tensor:
    """classification: [N, C] logits; embedding: [N, D] L2-normalised means of each text's token vectors (a model
    and task `can_pack` accepts)."""
    bert = model.bert if isinstance(model, BertForSequenceClassification) else model
    dtype = model.dtype  # the first floating parameter's (an int8 embedding table has none of its own)
    hidden = bert(input_ids=packed.input_ids, token_type_ids=packed.token_type_ids,
                  position_ids=packed.position_ids,
                  attention_mask=packed.attention_mask(dtype)).last_hidden_state  # [R, T, D]
    n = len(packed.starts[0])
    if task == "classification":
        assert isinstance(model, BertForSequenceClassification) and bert.pooler is not None
        cls = hidden[packed.starts]  # [N, D]
        return model.classifier(model.dropout(bert.pooler(cls[:, None, :])))  # the pooler reads position 0
    real = packed.text.flatten() >= 0
    tokens, owner = hidden.flatten(0, 1)[real], packed.text.flatten()[real]  # [M, D], [M]
    sums = torch.zeros(n, hidden.shape[-1], dtype=hidden.dtype).index_add_(0, owner, tokens)
    counts = torch.bincount(owner, minlength=n).clamp(min=1).to(hidden.dtype)
    return torch.nn.functional.normalize(sums / counts[:, None], dim=-1)
