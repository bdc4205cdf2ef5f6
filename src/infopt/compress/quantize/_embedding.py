"""Int8 embedding table with one float32 scale per row; only the looked-up rows are dequantized."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Int8Embedding", "quantize_input_embeddings"]


class Int8Embedding(nn.Module):
    """Drop-in for `nn.Embedding` (inference only): `weight_int8` [V, D] int8 and `scales` [V] float32."""

    weight_int8: torch.Tensor
    scales: torch.Tensor

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.register_buffer("weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(num_embeddings, dtype=torch.float32))

    @classmethod
    def from_float(cls, emb: nn.Embedding) -> Int8Embedding:
        """Symmetric per-row int8: scale = max|row| / 127."""
        w = emb.weight.detach().float()
        new = cls(emb.num_embeddings, emb.embedding_dim, emb.padding_idx)
        scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        new.weight_int8.copy_(torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8))
        new.scales.copy_(scales)
        return new

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = self.weight_int8[input_ids].to(torch.float32)
        return rows * self.scales[input_ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 per-row"


def quantize_input_embeddings(model: nn.Module, weights: bool = True) -> bool:
    """Replace the model's word embedding (`get_input_embeddings()`) by an Int8Embedding; False if none.

    `weights=False` puts an empty Int8Embedding of the same shape (for `replay` before load_state_dict).
    """
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if not isinstance(emb, nn.Embedding):
        return False
    new = Int8Embedding.from_float(emb) if weights else Int8Embedding(emb.num_embeddings, emb.embedding_dim,
                                                                       emb.padding_idx)
    model.set_input_embeddings(new)  # type: ignore[operator]
    return True
