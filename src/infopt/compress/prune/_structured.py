"""Structured pruning: cut heads, FFN neurons and layers out of the matrices; the config follows the shapes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from infopt.compress.prune._configs import StructuredConfig
from infopt.compress.prune._families import Family, family_of, linear_at, slice_linear
from infopt.compress.prune._importance import layer_influence, magnitude_importance, taylor_importance
from infopt.data import TextDataset
from infopt.errors import NotApplicable, UserError
from infopt.models import auto_class, pruned_bert_config, set_submodule

__all__ = ["plan_counts", "prune_structured"]


def _count(fraction: float, total: int, what: str, field: str) -> int:
    n = round(fraction * total)
    if n >= total:
        raise UserError(
            f"{field}={fraction:g} would remove all {total} {what} of a layer.",
            f"use {field} below {(total - 0.5) / total:.3f} (keep at least one).",
        )
    return n


def plan_counts(model: nn.Module, config: StructuredConfig) -> tuple[Family, int, int, list[int] | int]:
    """Validate the config against the model: (family, units removed per layer, neurons per layer, layers)."""
    family = family_of(model)
    blocks = family.block_list(model)
    head_dim = family.head_dim(model.config)
    units = {family.groups(b, head_dim)[0] for b in blocks}
    neurons = {family.neurons(b) for b in blocks}
    what = "attention heads" if family.groups(blocks[0], head_dim)[1] == 1 else "KV-head groups"
    n_units = max(_count(config.heads, u, what, "heads") for u in units)
    if n_units and getattr(model.config, "model_type", None) == "roberta":
        raise NotApplicable("Removing attention heads from RoBERTa is not supported (no loadable architecture for it).",
                          "prune RoBERTa's FFN neurons and layers only (heads=0).")
    n_neurons = max(_count(config.ffn, f, "FFN neurons", "ffn") for f in neurons)
    layers: list[int] | int
    if isinstance(config.layers, int):
        if config.layers >= len(blocks):
            raise UserError(f"layers={config.layers} would remove all {len(blocks)} layers.",
                              f"remove at most {len(blocks) - 1}.")
        layers = config.layers
    else:
        layers = list(config.layers)
        bad = [i for i in layers if i >= len(blocks)]
        if bad:
            raise UserError(f"Layer indices {bad} do not exist; the model has {len(blocks)} layers (0-based).",
                              f"use indices below {len(blocks)}.")
        if len(layers) >= len(blocks):
            raise UserError(f"layers={tuple(layers)} would remove every layer.", "keep at least one layer.")
    return family, n_units, n_neurons, layers


def _lowest(scores: torch.Tensor, n: int) -> list[int]:
    """Indices kept: all but the `n` lowest scores, in their original order."""
    order = scores.argsort(stable=True)
    return sorted(order[n:].tolist())


@torch.no_grad()
def _cut_block(block: nn.Module, family: Family, head_dim: int, keep_units: list[int], keep_neurons: list[int]) -> None:
    units, per_unit = family.groups(block, head_dim)

    def cut(path: str, rows: list[int] | None = None, cols: list[int] | None = None) -> None:
        set_submodule(block, path, slice_linear(linear_at(block, path), rows=rows, cols=cols))

    if len(keep_units) < units:
        q_rows = [u * per_unit * head_dim + j for u in keep_units for j in range(per_unit * head_dim)]
        kv_rows = [u * head_dim + j for u in keep_units for j in range(head_dim)]
        cut(family.q, rows=q_rows)
        cut(family.k, rows=kv_rows)
        cut(family.v, rows=kv_rows)
        cut(family.o, cols=q_rows)
        attn: Any = block.get_submodule(family.q.rpartition(".")[0])
        if hasattr(attn, "num_attention_heads"):  # BERT keeps these for information only
            attn.num_attention_heads = len(keep_units) * per_unit
            attn.all_head_size = len(q_rows)
    if len(keep_neurons) < family.neurons(block):
        for path in family.ffn_in:
            cut(path, rows=keep_neurons)
        cut(family.ffn_out, cols=keep_neurons)


def _drop_layers(model: nn.Module, family: Family, drop: Sequence[int]) -> None:
    blocks = family.block_list(model)
    kept = [b for i, b in enumerate(blocks) if i not in set(drop)]
    base: Any = model.base_model
    set_submodule(base, family.blocks, nn.ModuleList(kept))
    for new_index, block in enumerate(kept):
        for m in block.modules():
            if hasattr(m, "layer_idx"):
                setattr(m, "layer_idx", new_index)  # noqa: B010 (the KV cache is indexed by it)
    config: Any = model.config
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == len(blocks):
        config.layer_types = [t for i, t in enumerate(layer_types) if i not in set(drop)]
    config.num_hidden_layers = len(kept)


def _update_config(model: nn.Module, family: Family, head_dim: int, task: str) -> nn.Module:
    """Write the new sizes into the config: the model itself, or (BERT that lost heads) a PrunedBert copy."""
    config: Any = model.config
    blocks = family.block_list(model)
    neurons = {family.neurons(b) for b in blocks}
    if len(neurons) == 1:
        config.intermediate_size = neurons.pop()
    heads = [family.groups(b, head_dim)[0] for b in blocks]
    if family.name == "llama" and len(set(heads)) == 1:
        config.head_dim = head_dim
        config.num_attention_heads = heads[0] * family.groups(blocks[0], head_dim)[1]
        config.num_key_value_heads = heads[0]
    if family.name == "bert" and (config.model_type == "pruned_bert" or set(heads) != {config.num_attention_heads}):
        pruned = auto_class(task).from_config(pruned_bert_config(config, heads))  # same weights, new config class
        pruned.load_state_dict(model.state_dict(), strict=True)
        return pruned.train(model.training)
    return model


def prune_structured(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    config: StructuredConfig,
    texts: Sequence[str],
    labelled: TextDataset | None,
) -> tuple[nn.Module, dict[str, object]]:
    """Prune `model` (in place, or into a PrunedBert copy); returns the pruned model and what was removed and why."""
    family, n_units, n_neurons, layers = plan_counts(model, config)
    head_dim = family.head_dim(model.config)
    blocks = family.block_list(model)
    before = sum(p.numel() for p in model.parameters())
    units_before, neurons_before = family.groups(blocks[0], head_dim)[0], family.neurons(blocks[0])
    info: dict[str, object] = {"family": family.name, "importance": config.importance}
    if isinstance(layers, int) and layers > 0:
        influence = layer_influence(model, family, tokenizer, texts, config.calibration_length)
        layers = sorted(influence.argsort(stable=True)[:layers].tolist())
        info["layer_influence"] = [round(float(x), 5) for x in influence]
    drop = layers if isinstance(layers, list) else []
    if n_units or n_neurons:
        if config.importance == "taylor":
            attn, ffn = taylor_importance(model, family, tokenizer, task, texts, labelled, config.calibration_length)
        else:
            attn, ffn = magnitude_importance(model, family)
        for i, block in enumerate(blocks):
            if i not in drop:
                _cut_block(block, family, head_dim, _lowest(attn[i], n_units), _lowest(ffn[i], n_neurons))
    _drop_layers(model, family, drop)
    model = _update_config(model, family, head_dim, task)
    after = sum(p.numel() for p in model.parameters())
    info |= {
        "layers_removed": drop,
        "layers": len(family.block_list(model)),
        "attention_units_per_layer": f"{units_before} -> {units_before - n_units}",
        "ffn_neurons_per_layer": f"{neurons_before} -> {neurons_before - n_neurons}",
        "params_before": before,
        "params_after": after,
    }
    return model, info
