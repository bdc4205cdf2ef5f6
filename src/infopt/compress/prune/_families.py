"""Where the heads, FFN neurons and layers of each supported architecture live, and how to cut them out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from infopt.errors import NotApplicable
from infopt.models import BLOCK_PATHS

__all__ = ["FAMILIES", "Family", "family_of", "linear_at", "slice_linear"]


def linear_at(module: nn.Module, path: str) -> nn.Linear:
    """The nn.Linear at dotted `path` inside `module`."""
    linear = module.get_submodule(path)
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"{path} of {type(module).__name__} is a {type(linear).__name__}, not an nn.Linear")
    return linear


@dataclass(frozen=True)
class Family:
    """Module paths inside one transformer block, relative to the block."""

    name: str
    model_types: tuple[str, ...]
    blocks: str
    """Path of the ModuleList of blocks, relative to `model.base_model` (`infopt.models` BLOCK_PATHS)."""
    q: str
    k: str
    v: str
    o: str
    ffn_in: tuple[str, ...]
    """Linear layers whose output rows are the FFN neurons (up, and gate for gated FFNs)."""
    ffn_out: str
    """Linear layer whose input columns are the FFN neurons (down)."""

    def block_list(self, model: nn.Module) -> nn.ModuleList:
        base: Any = model.base_model
        blocks = base.get_submodule(self.blocks)
        if not isinstance(blocks, nn.ModuleList):
            raise TypeError(f"{self.blocks} of {type(base).__name__} is a {type(blocks).__name__}, not a ModuleList")
        return blocks

    def head_dim(self, config: object) -> int:
        explicit = getattr(config, "head_dim", None)
        return int(explicit or config.hidden_size // config.num_attention_heads)  # type: ignore[attr-defined]

    def groups(self, block: nn.Module, head_dim: int) -> tuple[int, int]:
        """(attention units in this block, query heads per unit): KV heads and the GQA group size."""
        q, k = linear_at(block, self.q), linear_at(block, self.k)
        return k.out_features // head_dim, q.out_features // k.out_features

    def neurons(self, block: nn.Module) -> int:
        return linear_at(block, self.ffn_out).in_features


_BERT = Family(
    name="bert",
    model_types=("bert", "pruned_bert", "roberta"),
    blocks=BLOCK_PATHS["bert"],
    q="attention.self.query",
    k="attention.self.key",
    v="attention.self.value",
    o="attention.output.dense",
    ffn_in=("intermediate.dense",),
    ffn_out="output.dense",
)
_LLAMA = Family(
    name="llama",
    model_types=("llama",),
    blocks=BLOCK_PATHS["llama"],
    q="self_attn.q_proj",
    k="self_attn.k_proj",
    v="self_attn.v_proj",
    o="self_attn.o_proj",
    ffn_in=("mlp.gate_proj", "mlp.up_proj"),
    ffn_out="mlp.down_proj",
)
FAMILIES = (_BERT, _LLAMA)


def family_of(model: object) -> Family:
    """The family of a transformers model, or an InfoptError naming the supported ones."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    supported = ", ".join(t for f in FAMILIES for t in f.model_types)
    raise NotApplicable(
        f"Structured pruning does not support {type(model).__name__} (model_type {model_type!r}).",
        f"use a model of type {supported}, or unstructured pruning (method magnitude or wanda).",
    )


@torch.no_grad()
def slice_linear(linear: nn.Linear, rows: Sequence[int] | None = None, cols: Sequence[int] | None = None) -> nn.Linear:
    """A new Linear holding only the given output rows and input columns of `linear`."""
    weight: torch.Tensor = linear.weight
    bias: torch.Tensor | None = linear.bias
    if rows is not None:
        index = torch.as_tensor(rows, dtype=torch.long)
        weight = weight.index_select(0, index)
        bias = bias.index_select(0, index) if bias is not None else None
    if cols is not None:
        weight = weight.index_select(1, torch.as_tensor(cols, dtype=torch.long))
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    new.weight = nn.Parameter(weight.detach().clone().contiguous(), requires_grad=linear.weight.requires_grad)
    if bias is not None:
        new.bias = nn.Parameter(bias.detach().clone(), requires_grad=bias.requires_grad)
    return new

