"""Quality of a variant on its task: accuracy / macro-F1, embedding agreement, perplexity."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from infopt.data import TextDataset, joined_tokens
from infopt.models import LoadedModel

__all__ = ["classification_quality", "embed", "embedding_quality", "perplexity", "predict_logits"]


def predict_logits(model: LoadedModel, texts: list[str], batch_size: int = 32, max_length: int = 128) -> torch.Tensor:
    """[N, ...] task outputs for all texts, in batches of similar length (little padding), in the texts' order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outs = [model.predict([texts[i] for i in order[k : k + batch_size]], max_length)
            for k in range(0, len(texts), batch_size)]
    stacked = torch.cat(outs)
    result = torch.empty_like(stacked)
    result[torch.tensor(order)] = stacked
    return result


def classification_quality(model: LoadedModel, data: TextDataset, max_length: int = 128) -> dict[str, float]:
    """Accuracy and macro-F1 in percent."""
    pred = predict_logits(model, data.texts, max_length=max_length).argmax(-1).tolist()
    acc = sum(p == y for p, y in zip(pred, data.labels, strict=True)) / len(data)
    return {"accuracy": 100 * acc, "macro_f1": 100 * float(f1_score(data.labels, pred, average="macro"))}


def embed(model: LoadedModel, texts: list[str]) -> torch.Tensor:
    """[N, D] unit-norm sentence embeddings."""
    return predict_logits(model, texts)


def embedding_quality(model: LoadedModel, texts: list[str], reference: torch.Tensor) -> dict[str, float]:
    """Mean cosine to the parent's embeddings, and how often both agree on each text's nearest neighbour."""
    emb = embed(model, texts)
    cosine = F.cosine_similarity(emb, reference, dim=-1).mean().item()

    def top1(e: torch.Tensor) -> torch.Tensor:
        sim = e @ e.T
        sim.fill_diagonal_(-2.0)
        return sim.argmax(-1)

    agreement = (top1(emb) == top1(reference)).float().mean().item()
    return {"cosine_to_parent": cosine, "retrieval_agreement": 100 * agreement}


@torch.inference_mode()
def perplexity(model: LoadedModel, texts: list[str], block: int = 256, max_tokens: int = 8192) -> dict[str, float]:
    """Token-level perplexity over `texts` cut into blocks of `block` tokens, up to `max_tokens` tokens."""
    ids = joined_tokens(model.tokenizer, texts, limit=max_tokens)[:max_tokens]
    nll, count = 0.0, 0
    for start in range(0, len(ids) - 1, block):
        chunk = torch.tensor([ids[start : start + block]])  # [1, T]
        if chunk.shape[1] < 2:
            break
        logits = model.forward({"input_ids": chunk, "attention_mask": torch.ones_like(chunk)})  # [1, T, V]
        loss = F.cross_entropy(logits[0, :-1].float(), chunk[0, 1:], reduction="sum")
        nll += loss.item()
        count += chunk.shape[1] - 1
    return {"perplexity": math.exp(nll / max(count, 1)), "tokens": float(count)}
