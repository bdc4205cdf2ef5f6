"""A model in memory together with its tokenizer and manifest."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.ao.nn.quantized.modules.linear import LinearPackedParams
from transformers import BatchEncoding, PreTrainedTokenizerBase

from infopt.models._manifest import Manifest
from infopt.models._packing import can_pack, pack, packed_forward
from infopt.models._pooling import masked_mean

__all__ = ["LoadedModel", "mean_pool"]

_PROBE = ("a tender, funny film", "ok", "the plot never lands and the jokes are stale, though the cast tries hard")
"""Texts on which packed and padded outputs must agree before a model is served packed."""


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T, D] hidden states, [B, T] mask -> [B, D] L2-normalised mean (sentence-transformers pooling)."""
    return torch.nn.functional.normalize(masked_mean(hidden, mask, floor=1e-9), dim=-1)


@dataclass
class LoadedModel:
    """`model` is a torch module or an `OnnxModel`; `forward` gives the task's output."""

    model: Any
    tokenizer: PreTrainedTokenizerBase
    manifest: Manifest
    _encoders: dict[int, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Fast tokenizers' Rust backends set up for one max_length each (see `encode`)."""
    _packs: bool | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def task(self) -> str:
        return self.manifest.task

    def _backend(self, max_length: int) -> Any:
        """A copy of the fast tokenizer's backend with this padding and truncation set once (what the tokenizer's
        own call sets on every call), or None for a slow tokenizer or one without a pad token."""
        if max_length not in self._encoders:
            tok = self.tokenizer
            backend = None
            if getattr(tok, "is_fast", False) and tok.pad_token_id is not None:
                backend = copy.deepcopy(tok.backend_tokenizer)
                backend.enable_truncation(max_length, stride=0, strategy="longest_first",
                                          direction=tok.truncation_side)
                backend.enable_padding(direction=tok.padding_side, pad_id=tok.pad_token_id,
                                       pad_type_id=tok.pad_token_type_id, pad_token=tok.pad_token)
            self._encoders[max_length] = backend
        return self._encoders[max_length]

    def encode(self, texts: list[str], max_length: int = 128) -> BatchEncoding:
        """Tokenize a batch with padding to its longest text (the same ids as the tokenizer's own padded call;
        a fast tokenizer's backend is called directly, which halves the cost of a one-text call)."""
        backend = self._backend(max_length) if texts else None
        if backend is None:
            return self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        encs = backend.encode_batch(texts)
        fields = {"input_ids": "ids", "token_type_ids": "type_ids", "attention_mask": "attention_mask"}
        return BatchEncoding({name: torch.from_numpy(np.array([getattr(e, attr) for e in encs], dtype=np.int64))
                              for name, attr in fields.items() if name in self.tokenizer.model_input_names})

    @torch.inference_mode()
    def forward(self, batch: BatchEncoding | dict[str, torch.Tensor]) -> torch.Tensor:
        """classification: [B, C] logits; embedding: [B, D] unit vectors; causal-lm: [B, T, V] logits."""
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        if self.task == "causal-lm":
            inputs.pop("token_type_ids", None)
        out = self.model(**inputs)
        if self.task == "embedding":
            return mean_pool(out.last_hidden_state, inputs["attention_mask"])
        return out.logits

    @property
    def packs(self) -> bool:
        """Whether `forward_packed` runs this model and gives its padded outputs (checked once, on three texts; a
        dynamically quantized model, whose activation scales depend on the whole batch, may not)."""
        if self._packs is None:
            self._packs = can_pack(self.model, self.task) and self._packing_agrees()
        return self._packs

    def _packing_agrees(self) -> bool:
        try:
            return torch.allclose(self.predict_packed(list(_PROBE)), self.predict(list(_PROBE)), atol=1e-4, rtol=1e-3)
        except Exception:  # a module swapped in by a compression method that packing does not know: pad
            return False

    @torch.inference_mode()
    def forward_packed(self, items: Sequence[Mapping[str, Sequence[int]]]) -> torch.Tensor:
        """`forward`'s output for tokenized, unpadded texts (`input_ids`, `token_type_ids`) packed end to end in
        rows, so no compute goes to padding (`infopt.models._packing`); for a model that `packs`."""
        return packed_forward(self.model, self.task, pack(items))

    def predict(self, texts: list[str], max_length: int = 128) -> torch.Tensor:
        """Text in, task output out (tokenization included)."""
        return self.forward(self.encode(texts, max_length))

    def predict_packed(self, texts: list[str], max_length: int = 128) -> torch.Tensor:
        """`predict` through `forward_packed` (tokenized without padding)."""
        enc = self.tokenizer(texts, truncation=True, max_length=max_length)
        return self.forward_packed([{k: enc[k][i] for k in enc if k != "attention_mask"} for i in range(len(texts))])

    def num_parameters(self) -> int:
        """Parameters and buffers as stored (quantized weights count one each); ONNX: the initializers' elements."""
        if not isinstance(self.model, torch.nn.Module):
            count = getattr(self.model, "num_parameters", None)
            return int(count()) if callable(count) else 0
        seen: set[int] = set()
        total = 0
        for t in [*self.model.parameters(), *self.model.buffers()]:
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel()
        for m in self.model.modules():
            if isinstance(m, LinearPackedParams):
                w, b = m._weight_bias()
                total += w.numel() + (b.numel() if b is not None else 0)
        return total
