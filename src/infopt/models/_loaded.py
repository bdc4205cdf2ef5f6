"""A model in memory together with its tokenizer and manifest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.ao.nn.quantized.modules.linear import LinearPackedParams
from transformers import BatchEncoding, PreTrainedTokenizerBase

from infopt.models._manifest import Manifest
from infopt.models._pooling import masked_mean

__all__ = ["LoadedModel", "mean_pool"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T, D] hidden states, [B, T] mask -> [B, D] L2-normalised mean (sentence-transformers pooling)."""
    return torch.nn.functional.normalize(masked_mean(hidden, mask, floor=1e-9), dim=-1)


@dataclass
class LoadedModel:
    """`model` is a torch module or an `OnnxModel`; `forward` gives the task's output."""

    model: Any
    tokenizer: PreTrainedTokenizerBase
    manifest: Manifest

    @property
    def task(self) -> str:
        return self.manifest.task

    def encode(self, texts: list[str], max_length: int = 128) -> BatchEncoding:
        """Tokenize a batch with padding to its longest text."""
        return self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")

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

    def predict(self, texts: list[str], max_length: int = 128) -> torch.Tensor:
        """Text in, task output out (tokenization included)."""
        return self.forward(self.encode(texts, max_length))

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
