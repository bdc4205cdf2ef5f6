"""classification_quality, predict_logits, embed / embedding_quality and perplexity, against hand-computed values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from infopt.data import TextDataset
from infopt.evaluate import (
    batch_flips,
    classification_ci,
    classification_quality,
    classify,
    embed,
    embedding_quality,
    mean_ci,
    perplexity,
    predict_logits,
    score_classification,
    score_embedding,
    score_perplexity,
)
from infopt.models import LoadedModel, Manifest, bundled_path

KEYWORDS = ["apple", "banana", "cherry"]


class KeywordClassifier(torch.nn.Module):
    """Stand-in classifier: the logit of class c is 1 if the text contains KEYWORDS[c], else 0."""

    def __init__(self, token_ids: list[int]) -> None:
        super().__init__()
        self.token_ids = token_ids
        self.calls: list[int] = []
        self.widths: list[int] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: torch.Tensor) -> SimpleNamespace:
        self.calls.append(input_ids.shape[0])
        self.widths.append(input_ids.shape[1])
        logits = torch.stack([(input_ids == t).any(-1).float() for t in self.token_ids], dim=-1)
        return SimpleNamespace(logits=logits)


@pytest.fixture
def keyword_model(tokenizer: PreTrainedTokenizerBase) -> LoadedModel:
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in KEYWORDS]
    assert all(len(i) == 1 for i in ids)  # each keyword is one token
    manifest = Manifest(name="keywords", task="classification", labels=KEYWORDS)
    return LoadedModel(KeywordClassifier([i[0] for i in ids]), tokenizer, manifest)


# --- classification ---


def test_predict_logits_batches_in_order(keyword_model: LoadedModel) -> None:
    texts = [f"text {i} {KEYWORDS[i % 3]}" for i in range(10)]
    logits = predict_logits(keyword_model, texts, batch_size=4)
    assert logits.shape == (10, 3)
    assert logits.argmax(-1).tolist() == [i % 3 for i in range(10)]
    assert keyword_model.model.calls == [4, 4, 2]


def test_predict_logits_batches_texts_of_similar_length(keyword_model: LoadedModel) -> None:
    texts = [("apple" if i % 2 else "cherry " + "very " * 20) for i in range(8)]  # short and long, interleaved
    logits = predict_logits(keyword_model, texts, batch_size=4)
    assert logits.argmax(-1).tolist() == [0 if i % 2 else 2 for i in range(8)]
    assert keyword_model.model.widths == [3, 23]  # [CLS] apple [SEP]; [CLS] cherry very x 20 [SEP]


def test_classification_quality_exact(keyword_model: LoadedModel) -> None:
    pred = [0, 0, 1, 1, 2, 2, 0, 1]
    true = [0, 1, 1, 1, 2, 0, 0, 2]
    texts = [f"I ate a {KEYWORDS[p]} today" for p in pred]
    q = classification_quality(keyword_model, TextDataset("t", texts, true, KEYWORDS))
    assert q["accuracy"] == pytest.approx(100 * 5 / 8)
    # per-class F1: class 0 2/3, class 1 2/3, class 2 1/2 -> macro 11/18
    assert q["macro_f1"] == pytest.approx(100 * 11 / 18)


def test_classification_quality_perfect_and_wrong(keyword_model: LoadedModel) -> None:
    texts = [f"some {w}" for w in KEYWORDS * 3]
    right = [0, 1, 2] * 3
    assert classification_quality(keyword_model, TextDataset("t", texts, right)) == {
        "accuracy": 100.0,
        "macro_f1": 100.0,
    }
    wrong = [1, 2, 0] * 3
    assert classification_quality(keyword_model, TextDataset("t", texts, wrong)) == {"accuracy": 0.0, "macro_f1": 0.0}


def test_classification_quality_over_many_batches(keyword_model: LoadedModel) -> None:
    # 70 texts = 3 batches of 32 / 32 / 6; every 7th label is wrong
    texts = [f"a {KEYWORDS[i % 3]}" for i in range(70)]
    labels = [(i % 3 + 1) % 3 if i % 7 == 0 else i % 3 for i in range(70)]
    q = classification_quality(keyword_model, TextDataset("t", texts, labels))
    assert q["accuracy"] == pytest.approx(100 * 60 / 70)
    assert keyword_model.model.calls == [32, 32, 6]


class BatchDependent(KeywordClassifier):
    """Answers like KeywordClassifier, except that a text alone in its batch gets the next class."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: torch.Tensor) -> SimpleNamespace:
        out = super().forward(input_ids, attention_mask, **kw)
        return SimpleNamespace(logits=out.logits.roll(1, -1) if input_ids.shape[0] == 1 else out.logits)


def test_batch_flips_counts_answers_that_change_alone(keyword_model: LoadedModel,
                                                      tokenizer: PreTrainedTokenizerBase) -> None:
    texts = [f"a {KEYWORDS[i % 3]} pie" for i in range(12)]
    assert batch_flips(keyword_model, texts, classify(keyword_model, texts)) == [0, 12]
    odd = LoadedModel(BatchDependent(keyword_model.model.token_ids), tokenizer, keyword_model.manifest)
    assert batch_flips(odd, texts, classify(odd, texts), n=5) == [5, 5]


def test_classification_quality_tiny_bert(tiny_bert_classifier: LoadedModel) -> None:
    texts = ["good", "bad", "a long text about nothing in particular", "hi"]
    pred = tiny_bert_classifier.predict(texts).argmax(-1).tolist()
    q = classification_quality(tiny_bert_classifier, TextDataset("t", texts, pred))
    assert q["accuracy"] == 100.0
    flipped = [1 - p for p in pred]
    assert classification_quality(tiny_bert_classifier, TextDataset("t", texts, flipped))["accuracy"] == 0.0


def test_score_classification_keeps_predictions_and_intervals(keyword_model: LoadedModel) -> None:
    pred = [i % 3 for i in range(30)]
    labels = [p if i % 5 else (p + 1) % 3 for i, p in enumerate(pred)]  # every 5th wrong: 80%
    texts = [f"a {KEYWORDS[p]} here" for p in pred]
    data = TextDataset("t", texts, labels, KEYWORDS)
    scored = score_classification(keyword_model, data)
    assert classify(keyword_model, texts) == pred == scored.predictions
    assert scored.quality == classification_quality(keyword_model, data)
    assert scored.quality["accuracy"] == pytest.approx(80.0)
    assert scored.n_eval == 30
    assert scored.quality_ci == classification_ci(pred, labels)
    for metric, (low, high) in scored.quality_ci.items():
        assert low < scored.quality[metric] < high


# --- embeddings ---

SENTENCES = [
    "The cat sat on the mat.",
    "Stocks fell sharply on Monday.",
    "A recipe for apple pie.",
    "The football match ended in a draw.",
    "Quantum computers use qubits.",
    "It rained all weekend in London.",
    "My favourite colour is blue.",
    "The train to Paris was late.",
]


def test_embed_is_unit_norm(tiny_bert_embedder: LoadedModel) -> None:
    emb = embed(tiny_bert_embedder, SENTENCES)
    assert emb.shape == (8, 32)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(8))


def test_embedding_quality_against_itself(tiny_bert_embedder: LoadedModel) -> None:
    reference = embed(tiny_bert_embedder, SENTENCES)
    q = embedding_quality(tiny_bert_embedder, SENTENCES, reference)
    assert q["cosine_to_parent"] == pytest.approx(1.0, abs=1e-5)
    assert q["retrieval_agreement"] == 100.0


def test_embedding_quality_against_noisy_reference(tiny_bert_embedder: LoadedModel) -> None:
    emb = embed(tiny_bert_embedder, SENTENCES)
    gen = torch.Generator().manual_seed(0)
    noisy = F.normalize(emb + 0.1 * torch.randn(emb.shape, generator=gen), dim=-1)
    q = embedding_quality(tiny_bert_embedder, SENTENCES, noisy)
    expected = F.cosine_similarity(emb, noisy, dim=-1).mean().item()
    assert q["cosine_to_parent"] == pytest.approx(expected, abs=1e-5)
    assert 0.5 < q["cosine_to_parent"] < 0.99

    unrelated = F.normalize(torch.randn(emb.shape, generator=gen), dim=-1)
    q = embedding_quality(tiny_bert_embedder, SENTENCES, unrelated)
    assert abs(q["cosine_to_parent"]) < 0.5
    assert q["retrieval_agreement"] < 100.0


def test_score_embedding(tiny_bert_embedder: LoadedModel) -> None:
    emb = embed(tiny_bert_embedder, SENTENCES)
    gen = torch.Generator().manual_seed(2)
    noisy = F.normalize(emb + 0.2 * torch.randn(emb.shape, generator=gen), dim=-1)
    scored = score_embedding(tiny_bert_embedder, SENTENCES, noisy)
    assert scored.quality == pytest.approx(embedding_quality(tiny_bert_embedder, SENTENCES, noisy))
    assert scored.n_eval == 8 and scored.predictions == []
    cosines = F.cosine_similarity(emb, noisy, dim=-1).double().numpy()
    assert scored.quality_ci["cosine_to_parent"] == pytest.approx(mean_ci(cosines), abs=1e-6)
    low, high = scored.quality_ci["cosine_to_parent"]
    assert low < scored.quality["cosine_to_parent"] < high
    low, high = scored.quality_ci["retrieval_agreement"]
    assert 0 <= low <= scored.quality["retrieval_agreement"] <= high <= 100


def test_retrieval_agreement_counts_nearest_neighbours(tiny_bert_embedder: LoadedModel) -> None:
    emb = embed(tiny_bert_embedder, SENTENCES)

    def top1(e: torch.Tensor) -> torch.Tensor:
        sim = e @ e.T
        sim.fill_diagonal_(-2.0)
        return sim.argmax(-1)

    gen = torch.Generator().manual_seed(1)
    reference = F.normalize(emb + 0.3 * torch.randn(emb.shape, generator=gen), dim=-1)
    expected = 100 * (top1(emb) == top1(reference)).float().mean().item()
    assert embedding_quality(tiny_bert_embedder, SENTENCES, reference)["retrieval_agreement"] == pytest.approx(expected)


# --- perplexity ---

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."


def _ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[int]:
    ids: list[int] = []
    for t in texts:
        ids += tokenizer(t, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
    return ids


def _nll_sum(model: torch.nn.Module, ids: list[int]) -> float:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return F.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="sum").item()


def test_perplexity_is_finite_and_above_one(tiny_llama: LoadedModel) -> None:
    q = perplexity(tiny_llama, [TEXT, "Another sentence follows."])
    assert math.isfinite(q["perplexity"]) and q["perplexity"] > 1
    assert q["tokens"] == len(_ids(tiny_llama.tokenizer, [TEXT, "Another sentence follows."])) - 1


def test_perplexity_equals_exp_mean_nll_on_one_block(tiny_llama: LoadedModel) -> None:
    assert tiny_llama.tokenizer.eos_token_id is None  # the BERT tokenizer: no separator appended
    ids = _ids(tiny_llama.tokenizer, [TEXT])
    assert 5 < len(ids) < 256
    expected = math.exp(_nll_sum(tiny_llama.model, ids) / (len(ids) - 1))
    q = perplexity(tiny_llama, [TEXT])
    assert q["tokens"] == len(ids) - 1
    assert q["perplexity"] == pytest.approx(expected, rel=1e-5)


def test_perplexity_over_several_blocks(tiny_llama: LoadedModel) -> None:
    ids = _ids(tiny_llama.tokenizer, [TEXT])
    block = 5
    chunks = [ids[i : i + block] for i in range(0, len(ids) - 1, block)]
    chunks = [c for c in chunks if len(c) >= 2]
    nll = sum(_nll_sum(tiny_llama.model, c) for c in chunks)
    count = sum(len(c) - 1 for c in chunks)
    q = perplexity(tiny_llama, [TEXT], block=block)
    assert q["tokens"] == count
    assert q["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-5)
    # blocks lose context at each boundary: a different number than scoring all at once
    assert q["perplexity"] != pytest.approx(perplexity(tiny_llama, [TEXT])["perplexity"], rel=1e-6)


def test_perplexity_max_tokens(tiny_llama: LoadedModel) -> None:
    ids = _ids(tiny_llama.tokenizer, [TEXT, TEXT])
    q = perplexity(tiny_llama, [TEXT, TEXT, TEXT], max_tokens=9)
    assert q["tokens"] == 8
    assert q["perplexity"] == pytest.approx(math.exp(_nll_sum(tiny_llama.model, ids[:9]) / 8), rel=1e-5)


def test_perplexity_appends_eos_between_texts(tiny_llama: LoadedModel) -> None:
    tok = AutoTokenizer.from_pretrained(bundled_path("minilm-l6"), eos_token="[SEP]")
    model = LoadedModel(tiny_llama.model, tok, tiny_llama.manifest)
    texts = ["first text here", "and a second one"]
    ids = _ids(tok, texts)
    assert ids.count(tok.eos_token_id) == 2
    q = perplexity(model, texts)
    assert q["tokens"] == len(ids) - 1
    assert q["perplexity"] == pytest.approx(math.exp(_nll_sum(tiny_llama.model, ids) / (len(ids) - 1)), rel=1e-5)


def test_score_perplexity(tiny_llama: LoadedModel) -> None:
    texts = [TEXT] * 6
    scored = score_perplexity(tiny_llama, texts, block=8)
    assert scored.quality == pytest.approx(perplexity(tiny_llama, texts, block=8))
    assert scored.n_eval == scored.quality["tokens"] > 40  # n_eval counts the scored tokens
    low, high = scored.quality_ci["perplexity"]
    assert low < scored.quality["perplexity"] < high


def test_score_perplexity_of_nothing(tiny_llama: LoadedModel) -> None:
    scored = score_perplexity(tiny_llama, ["hi"])
    assert scored.n_eval == 0 and scored.quality_ci == {}
