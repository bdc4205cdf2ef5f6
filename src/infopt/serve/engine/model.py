"""A lean Llama decoder over a paged KV cache: the weights of a Hugging Face `LlamaForCausalLM`, our own forward.

One step runs every scheduled token of every sequence as one flat batch `[N]` through the linear layers. Attention
is per group: all one-token sequences (decodes) together, padded to the longest and masked; each multi-token
chunk (a prefill chunk, or a token and its drafts) alone, causal over its cached tokens and itself. K and V of the
new tokens go into the pool first, so a chunk attends to what the pool holds, wherever it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from infopt.errors import NotApplicable
from infopt.serve.engine._weights import WEIGHT_FORMATS, LinearWeight, from_module, fuse, make_weight
from infopt.serve.engine.scheduler import SchedulerOutput

__all__ = ["LlamaRunner", "ModelShape", "model_shape", "num_blocks_for", "rope_tables"]

SUPPORTED_ROPE = ("default", "linear", "llama3")
"""RoPE types whose frequencies do not depend on the sequence length."""


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a Llama model that the engine needs."""

    num_layers: int
    hidden: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position: int

    def kv_bytes_per_token(self, dtype: torch.dtype) -> int:
        """Bytes of K and V of one token over all layers."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype.itemsize


@dataclass
class _Layer:
    """One decoder layer: norms in the activation dtype, linear weights in the runner's format (q|k|v and
    gate|up fused into one weight each where the format allows, else kept as parts)."""

    ln_attn: torch.Tensor  # [E]
    qkv: list[LinearWeight]  # [(H + 2K) * D, E] in one weight, or q, k, v
    wo: LinearWeight  # [E, H * D]
    ln_mlp: torch.Tensor  # [E]
    gate_up: list[LinearWeight]  # [2I, E] in one weight, or gate, up
    w_down: LinearWeight  # [E, I]


@dataclass
class _Batch:
    """The tensors of one step, shared by all layers."""

    input_ids: torch.Tensor  # [N]
    positions: torch.Tensor  # [N]
    slots: torch.Tensor  # [N] flat slot (block * block_size + offset) of each new token
    num_decodes: int  # rows [0, B) are one-token sequences
    decode_kv: torch.Tensor | None  # [B * S] flat slots of their context, padded to the longest
    decode_mask: torch.Tensor | None  # [B, 1, 1, S] 0 where a row may attend, -inf on padding; None: no padding
    chunks: list[tuple[int, int, torch.Tensor | None, torch.Tensor | None]]  # (row, n, kv slots [S], mask [n, S])
    logit_rows: torch.Tensor  # [R] rows whose logits are returned, in the scheduler's order


def model_shape(config: Any) -> ModelShape:
    """The sizes of a Hugging Face Llama config; other families (or biases, other activations) raise."""
    if getattr(config, "model_type", None) != "llama":
        raise NotApplicable(f"The engine runs Llama-family models, not {getattr(config, 'model_type', '?')!r}.",
                            "serve this model with the plain generation loop.")
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "attention_bias", False) \
            or getattr(config, "mlp_bias", False):
        raise NotApplicable("The engine supports Llama models with SiLU MLPs and no biases only.",
                            "serve this model with the plain generation loop.")
    heads = config.num_attention_heads
    return ModelShape(
        num_layers=config.num_hidden_layers, hidden=config.hidden_size, num_heads=heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        vocab_size=config.vocab_size, max_position=config.max_position_embeddings,
    )


def rope_tables(config: Any, head_dim: int, max_position: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin `[P, D]` (fp32) of every position, as Hugging Face computes them; other types raise."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE:
        raise NotApplicable(f"The engine does not support RoPE scaling of type {rope_type!r}.",
                            f"use a model with RoPE of type {', '.join(SUPPORTED_ROPE)}, or the plain loop.")
    if rope_type == "default":
        theta = float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        scale = 1.0
    else:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        inv_freq, scale = ROPE_INIT_FUNCTIONS[rope_type](config, torch.device("cpu"))
    freqs = torch.arange(max_position)[:, None].float() * inv_freq.float()  # [P, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [P, D]
    return emb.cos() * scale, emb.sin() * scale


class LlamaRunner:
    """Runs a Llama model's weights over a KV pool it owns: `[num_blocks, block_size, 2, K, D]` (K and V side by
    side) per layer. `execute(scheduler_output)` returns the logits `[R, V]` (fp32) the scheduler asked for.

    `dtype` is the activations' and the KV cache's; `weights` the linear layers' format (see `_weights`): float32
    uses the model's own parameters (no copy, not fused); the others are converted copies with q|k|v and gate|up
    fused. With int8 / int4 the lm_head (the tied embedding, in a small model most of a decode step's bytes) is
    int8 too. Layers already quantized by infopt (Int8 / Int4WeightOnlyLinear) are used as they are."""

    def __init__(self, model: torch.nn.Module, num_blocks: int, block_size: int,
                 dtype: torch.dtype = torch.float32, weights: str = "float32") -> None:
        if weights not in WEIGHT_FORMATS:
            raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, not {weights!r}")
        hf: Any = model
        config = hf.config
        self.shape = s = model_shape(config)
        self.dtype = dtype
        self.weights = weights
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.eps = float(config.rms_norm_eps)
        self.scale = s.head_dim ** -0.5
        inner = hf.model
        self.embed = inner.embed_tokens.weight.detach().to(dtype)  # [V, E]
        head_format = "int8" if weights in ("int8", "int4") else weights
        tied = bool(getattr(config, "tie_word_embeddings", False)) and isinstance(hf.lm_head, torch.nn.Linear)
        if tied and head_format == "float32" and dtype == torch.float32:
            self.lm_head: LinearWeight = make_weight(self.embed, "float32")  # [V, E], shared with embed
        else:
            self.lm_head = (make_weight(inner.embed_tokens.weight, head_format) if tied
                            else from_module(hf.lm_head, head_format))
        self.norm = inner.norm.weight.detach().to(dtype)  # [E]
        self.layers = [self._layer(layer) for layer in inner.layers]
        cos, sin = rope_tables(config, s.head_dim, s.max_position)
        half = s.head_dim // 2
        self.cos = cos.to(dtype)  # [P, D]
        self.sin = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1).to(dtype)  # signs of rotate_half folded in
        pool = (s.num_layers, num_blocks, block_size, 2, s.num_kv_heads, s.head_dim)
        self.kv_cache = torch.zeros(pool, dtype=dtype)  # [L, blocks, block_size, 2, K, D]
        self.kv_slots = [c.view(-1, 2, s.num_kv_heads, s.head_dim) for c in self.kv_cache]  # per layer [slots, 2, K, D]

    def _layer(self, layer: Any) -> _Layer:
        a, m = layer.self_attn, layer.mlp
        fmt = self.weights

        def parts(*modules: Any) -> list[LinearWeight]:
            each = [from_module(mod, fmt) for mod in modules]
            fused = fuse(each) if fmt != "float32" else None  # float32: the model's own tensors, not copied
            return [fused] if fused is not None else each

        def norm(mod: Any) -> torch.Tensor:
            return mod.weight.detach().to(self.dtype)  # type: ignore[no-any-return]

        return _Layer(ln_attn=norm(layer.input_layernorm), qkv=parts(a.q_proj, a.k_proj, a.v_proj),
                      wo=from_module(a.o_proj, fmt), ln_mlp=norm(layer.post_attention_layernorm),
                      gate_up=parts(m.gate_proj, m.up_proj), w_down=from_module(m.down_proj, fmt))

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights one decode step reads: every linear layer and the lm_head (norms are negligible)."""
        total = self.lm_head.nbytes
        for w in self.layers:
            total += sum(p.nbytes for p in (*w.qkv, w.wo, *w.gate_up, w.w_down))
        return total

    # ------------------------------------------------------------ the step's tensors

    def _prepare(self, out: SchedulerOutput) -> _Batch:
        bs = self.block_size
        seqs = sorted(range(len(out.seqs)), key=lambda i: len(out.seqs[i].token_ids) > 1)  # decodes first
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        first_row = [0] * len(out.seqs)
        chunks: list[tuple[int, int, torch.Tensor | None, torch.Tensor | None]] = []
        decode_tables: list[list[int]] = []
        decode_lens: list[int] = []
        for i in seqs:
            seq = out.seqs[i]
            n, start, table = len(seq.token_ids), seq.start, seq.block_table
            first_row[i] = len(ids)
            ids.extend(seq.token_ids)
            for p in range(start, start + n):
                positions.append(p)
                slots.append(table[p // bs] * bs + p % bs)
            if n == 1:
                decode_tables.append(table)
                decode_lens.append(start + 1)
            elif start == 0:
                chunks.append((first_row[i], n, None, None))
            else:
                kv = self._context_slots([table], [start + n])  # [S]
                causal = torch.arange(start + n)[None, :] <= torch.arange(start, start + n)[:, None]  # [n, S]
                chunks.append((first_row[i], n, kv, self._additive(causal)))
        decode_kv = decode_mask = None
        if decode_tables:
            decode_kv = self._context_slots(decode_tables, decode_lens)  # [B * S]
            if min(decode_lens) != max(decode_lens):
                valid = torch.arange(max(decode_lens))[None, :] < torch.tensor(decode_lens)[:, None]  # [B, S]
                decode_mask = self._additive(valid)[:, None, None, :]  # [B, 1, 1, S]
        rows = [first_row[i] + len(seq.token_ids) - k for i, seq in enumerate(out.seqs)
                for k in range(seq.num_logits, 0, -1)]
        return _Batch(torch.tensor(ids), torch.tensor(positions), torch.tensor(slots), len(decode_tables),
                      decode_kv, decode_mask, chunks, torch.tensor(rows, dtype=torch.long))

    def _context_slots(self, tables: list[list[int]], lens: list[int]) -> torch.Tensor:
        """Flat slots `[B * S]` of positions 0..S-1 of each table (S the longest length; padding reads slot 0),
        flat because `index_select` on one index is much faster than advanced indexing."""
        s = max(lens)
        width = -(-s // self.block_size)
        padded = torch.tensor([t[:width] + [0] * (width - len(t[:width])) for t in tables])  # [B, width]
        offsets = torch.arange(self.block_size)
        return (padded[:, :, None] * self.block_size + offsets).view(len(tables), -1)[:, :s].reshape(-1)

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        """A bool mask as 0 / -inf in the compute dtype (SDPA on CPU runs faster with these than with bools)."""
        return torch.zeros(allowed.shape, dtype=self.dtype).masked_fill_(~allowed, float("-inf"))

    # ------------------------------------------------------------ the forward

    def _attend(self, q: torch.Tensor, kv: torch.Tensor, layer: int, batch: _Batch) -> torch.Tensor:
        """Attention of the new tokens `q [N, H, D]` (their `kv [N, 2, K, D]` already in the pool) -> [N, H * D]."""
        s = self.shape
        kh, d = s.num_kv_heads, s.head_dim
        groups = s.num_heads // kh
        pool = self.kv_slots[layer]  # [slots, 2, K, D]
        b = batch.num_decodes
        if batch.decode_kv is not None:
            qd = q[:b].view(b, kh, groups, d)  # [B, K, G, D]: a head group per KV head
            ctx = pool.index_select(0, batch.decode_kv).view(b, -1, 2, kh, d)  # [B, S, 2, K, D]
            o = F.scaled_dot_product_attention(qd, ctx[:, :, 0].transpose(1, 2), ctx[:, :, 1].transpose(1, 2),
                                               attn_mask=batch.decode_mask, scale=self.scale)  # [B, K, G, D]
            if not batch.chunks:
                return o.reshape(b, s.num_heads * d)
            out = torch.empty(q.shape, dtype=q.dtype)  # [N, H, D]
            out[:b] = o.reshape(b, s.num_heads, d)
        else:
            out = torch.empty(q.shape, dtype=q.dtype)
        for row, n, slots, mask in batch.chunks:
            qc = q[row:row + n].transpose(0, 1)  # [H, n, D]
            if slots is None:  # nothing cached before the chunk: plain causal attention over itself
                new = kv[row:row + n]  # [n, 2, K, D]
                kc, vc = new[:, 0].transpose(0, 1), new[:, 1].transpose(0, 1)  # [K, n, D]
                o = F.scaled_dot_product_attention(qc, kc, vc, is_causal=True, scale=self.scale, enable_gqa=True)
            else:
                ctx = pool.index_select(0, slots)  # [S, 2, K, D]
                kc, vc = ctx[:, 0].transpose(0, 1), ctx[:, 1].transpose(0, 1)  # [K, S, D]
                o = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=mask, scale=self.scale, enable_gqa=True)
            out[row:row + n] = o.transpose(0, 1)
        return out.view(q.shape[0], -1)

    @torch.inference_mode()
    def execute(self, out: SchedulerOutput) -> torch.Tensor:
        """Run one step: write the new tokens' K/V into the pool and return the logits `[R, V]` (fp32) of the rows
        the scheduler asked for (the last `num_logits` tokens of each sequence, in order)."""
        return self._forward(self._prepare(out))

    def _forward(self, batch: _Batch) -> torch.Tensor:
        s = self.shape
        n = batch.input_ids.shape[0]
        e, d, h_, kh = s.hidden, s.head_dim, s.num_heads, s.num_kv_heads
        qk_width, half, eps = (h_ + kh) * d, d // 2, self.eps
        cos = self.cos[batch.positions][:, None, :]  # [N, 1, D]
        sin = self.sin[batch.positions][:, None, :]
        x = F.embedding(batch.input_ids, self.embed)  # [N, E]
        for i, w in enumerate(self.layers):
            h = F.rms_norm(x, (e,), w.ln_attn, eps)
            qkv = _project(w.qkv, h)  # [N, (H + 2K) * D]: q | k | v
            qk = qkv[:, :qk_width].view(n, h_ + kh, d)  # q and k heads, roped together in place
            swapped = torch.cat((qk[..., half:], qk[..., :half]), dim=-1)  # rotate_half without its sign
            qk.mul_(cos).addcmul_(swapped, sin)
            kv = qkv[:, h_ * d:].view(n, 2, kh, d)  # [N, 2, K, D]
            self.kv_slots[i].index_copy_(0, batch.slots, kv)
            attn = self._attend(qkv[:, :h_ * d].view(n, h_, d), kv, i, batch)  # [N, H * D]
            x = x + w.wo.linear(attn)
            h = F.rms_norm(x, (e,), w.ln_mlp, eps)
            if len(w.gate_up) == 1:
                gu = w.gate_up[0].linear(h)  # [N, 2I]
                inner = gu.shape[1] // 2
                act = F.silu(gu[:, :inner]).mul_(gu[:, inner:])
            else:
                act = F.silu(w.gate_up[0].linear(h)).mul_(w.gate_up[1].linear(h))  # [N, I]
            x = x + w.w_down.linear(act)  # [N, E]
        h = F.rms_norm(x[batch.logit_rows], (e,), self.norm, eps)  # [R, E]
        return self.lm_head.linear(h).float()  # [R, V]


def _project(parts: list[LinearWeight], h: torch.Tensor) -> torch.Tensor:
    """The fused projection of `h`, or its parts' outputs side by side."""
    if len(parts) == 1:
        return parts[0].linear(h)
    return torch.cat([p.linear(h) for p in parts], dim=-1)


def num_blocks_for(shape: ModelShape, block_size: int, dtype: torch.dtype, mb: float) -> int:
    """Blocks of `block_size` tokens that fit in `mb` MiB of K and V."""
    return max(1, math.floor(mb * 2**20 / (shape.kv_bytes_per_token(dtype) * block_size)))
