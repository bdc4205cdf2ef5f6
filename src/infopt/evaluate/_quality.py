"""Quality of a variant on its task: accuracy / macro-F1, embedding agreement, perplexity; each with the number of
examples that scored it and a 95% bootstrap interval (`score_*`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from infopt.data import TextDataset, joined_tokens
from infopt.evaluate._stats import classification_ci, mean_ci, perplexity_ci
from infopt.models import LoadedModel

__all__ = [
    "Scored",
    "batch_flips",
    "classification_quality",
    "classify",
    "embed",
    "embedding_quality",
    "perplexity",
    "predict_logits",
    "score_classification",
    "score_embedding",
    "score_perplexity",
]


@dataclass
class Scored:
    """A variant's quality on its test data, how many examples scored it and how sure it is."""

    quality: dict[str, float]
    n_eval: int
    """Examples (classifiers, embedders) or scored tokens (LMs)."""
    quality_ci: dict[str, list[float]] = field(default_factory=dict)
    """Metric -> [low, high], a 95% bootstrap interval."""
    predictions: list[int] = field(default_factory=list)
    """Classifiers: the predicted label of each test example, in order."""


def predict_logits(model: LoadedModel, texts: list[str], batch_size: int = 32, max_length: int = 128) -> torch.Tensor:
    """[N, ...] task outputs for all texts, in batches of similar length (little padding), in the texts' order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outs = [model.predict([texts[i] for i in order[k : k + batch_size]], max_length)
            for k in range(0, len(texts), batch_size)]
    stacked = torch.cat(outs)
    result = torch.empty_like(stacked)
    result[torch.tensor(order)] = stacked
    return result


def classify(model: LoadedModel, texts: list[str], max_length: int = 128) -> list[int]:
    """The predicted label of each text, in the texts' order."""
    return [int(p) for p in predict_logits(model, texts, max_length=max_length).argmax(-1).tolist()]


def batch_flips(model: LoadedModel, texts: list[str], predictions: list[int], n: int = 256,
                max_length: int = 128) -> list[int]:
    """[k, n]: of the first `n` texts classified alone (batch 1, as a lone request is), k get another label than
    `predictions` (from `classify`'s batches). Dynamic int8 scales activations per batch, so its answers can depend
    on the other texts of the batch; float models give 0 (or a near-tie)."""
    texts = texts[:n]
    alone = [int(model.predict([t], max_length).argmax(-1)[0]) for t in texts]
    return [sum(a != b for a, b in zip(alone, predictions, strict=False)), len(texts)]


def _classification_metrics(pred: list[int], labels: list[int]) -> dict[str, float]:
    acc = sum(p == y for p, y in zip(pred, labels, strict=True)) / len(labels)
    return {"accuracy": 100 * acc, "macro_f1": 100 * float(f1_score(labels, pred, average="macro"))}


def classification_quality(model: LoadedModel, data: TextDataset, max_length: int = 128) -> dict[str, float]:
    """Accuracy and macro-F1 in percent."""
    return _classification_metrics(classify(model, data.texts, max_length), data.labels)


def score_classification(model: LoadedModel, data: TextDataset, max_length: int = 128, seed: int = 0) -> Scored:
    """Accuracy and macro-F1 with their intervals, and every prediction (for flips and paired intervals)."""
    pred = classify(model, data.texts, max_length)
    ci = classification_ci(pred, data.labels, seed=seed)
    return Scored(_classification_metrics(pred, data.labels), len(data), ci, pred)


def embed(model: LoadedModel, texts: list[str]) -> torch.Tensor:
    """[N, D] unit-norm sentence embeddings."""
    return predict_logits(model, texts)


def _embedding_outcomes(
    model: LoadedModel, texts: list[str], reference: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per text: the cosine to the parent's embedding, and 1.0 where both agree on its nearest neighbour."""
    emb = embed(model, texts)
    cosine = F.cosine_similarity(emb, reference, dim=-1)

    def top1(e: torch.Tensor) -> torch.Tensor:
        sim = e @ e.T
        sim.fill_diagonal_(-2.0)
        return sim.argmax(-1)

    return cosine, (top1(emb) == top1(reference)).float()


def embedding_quality(model: LoadedModel, texts: list[str], reference: torch.Tensor) -> dict[str, float]:
    """Mean cosine to the parent's embeddings, and how often both agree on each text's nearest neighbour."""
    cosine, agree = _embedding_outcomes(model, texts, reference)
    return {"cosine_to_parent": cosine.mean().item(), "retrieval_agreement": 100 * agree.mean().item()}


def score_embedding(model: LoadedModel, texts: list[str], reference: torch.Tensor, seed: int = 0) -> Scored:
    """`embedding_quality` with intervals over the texts (the neighbours stay those found among all texts)."""
    cosine, agree = _embedding_outcomes(model, texts, reference)
    quality = {"cosine_to_parent": cosine.mean().item(), "retrieval_agreement": 100 * agree.mean().item()}
    ci = {"cosine_to_parent": mean_ci(cosine.double().numpy(), seed=seed),
          "retrieval_agreement": mean_ci(100 * agree.double().numpy(), seed=seed)}
    return Scored(quality, len(texts), ci)


@torch.inference_mode()
def _block_nll(model: LoadedModel, texts: list[str], block: int, max_tokens: int) -> tuple[list[float], list[int]]:
    """Summed NLL and scored tokens of each block of `block` tokens, up to `max_tokens` tokens."""
    ids = joined_tokens(model.tokenizer, texts, limit=max_tokens)[:max_tokens]
    nll: list[float] = []
    count: list[int] = []
    for start in range(0, len(ids) - 1, block):
        chunk = torch.tensor([ids[start : start + block]])  # [1, T]
        if chunk.shape[1] < 2:
            break
        logits = model.forward({"input_ids": chunk, "attention_mask": torch.ones_like(chunk)})  # [1, T, V]
        nll.append(F.cross_entropy(logits[0, :-1].float(), chunk[0, 1:], reduction="sum").item())
        count.append(chunk.shape[1] - 1)
    return nll, count


def perplexity(model: LoadedModel, texts: list[str], block: int = 256, max_tokens: int = 8192) -> dict[str, float]:
    """Token-level perplexity over `texts` cut into blocks of `block` tokens, up to `max_tokens` tokens."""
    nll, count = _block_nll(model, texts, block, max_tokens)
    return {"perplexity": math.exp(sum(nll) / max(sum(count), 1)), "tokens": float(sum(count))}


def score_perplexity(model: LoadedModel, texts: list[str], block: int = 256, max_tokens: int = 8192,
                     seed: int = 0) -> Scored:
    """`perplexity` with an interval over the blocks; n_eval is the number of scored tokens."""
    nll, count = _block_nll(model, texts, block, max_tokens)
    quality = {"perplexity": math.exp(sum(nll) / max(sum(count), 1)), "tokens": float(sum(count))}
    return Scored(quality, sum(count), {"perplexity": perplexity_ci(nll, count, seed=seed)} if nll else {})
