"""Int8Embedding: per-row int8 table, lookups dequantize only their rows."""

from __future__ import annotations

import torch
from torch import nn

from infopt.compress.quantize import Int8Embedding, sqnr
from infopt.compress.quantize._embedding import quantize_input_embeddings


def _embedding() -> nn.Embedding:
    torch.manual_seed(0)
    emb = nn.Embedding(100, 24, padding_idx=0)
    with torch.no_grad():
        emb.weight[7] *= 50.0  # one outlier row must not cost the others their precision
    return emb


def test_lookup_matches_float() -> None:
    emb = _embedding()
    q = Int8Embedding.from_float(emb)
    ids = torch.tensor([[1, 2, 7, 0], [99, 98, 3, 3]])
    out = q(ids)
    assert out.shape == (2, 4, 24) and out.dtype == torch.float32
    assert sqnr(emb(ids), out) > 38.0  # per-row int8: ~42 dB
    assert sqnr(emb(torch.tensor([1, 2, 3])), q(torch.tensor([1, 2, 3]))) > 38.0
    assert torch.equal(q(torch.tensor([0])), torch.zeros(1, 24))
    assert (q.num_embeddings, q.embedding_dim, q.padding_idx) == (100, 24, 0)


def test_state_dict_round_trip() -> None:
    q = Int8Embedding.from_float(_embedding())
    assert {k: v.dtype for k, v in q.state_dict().items()} == {"weight_int8": torch.int8, "scales": torch.float32}
    fresh = Int8Embedding(100, 24, padding_idx=0)
    fresh.load_state_dict(q.state_dict(), strict=True)
    ids = torch.arange(100)
    assert torch.equal(fresh(ids), q(ids))


def test_models_without_input_embeddings_are_left_alone() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    assert quantize_input_embeddings(model) is False
