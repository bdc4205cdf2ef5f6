"""finetune on tiny random-init classifiers; length-grouped batching; custom losses; bad input."""

from __future__ import annotations

import copy
import itertools
import random

import pytest
import torch
import torch.nn.functional as F

from infopt.data import TextDataset
from infopt.errors import InfoptError
from infopt.evaluate import classification_quality
from infopt.models import LoadedModel
from infopt.train import FinetuneConfig, finetune, length_grouped_batches

SUBJECTS = ["the movie", "this film", "the plot", "the acting", "that show", "the ending", "our trip", "the food"]


def _sentiment(n: int = 64, seed: int = 0) -> TextDataset:
    """Trivially separable: label 1 texts say good / great, label 0 texts say bad / awful."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 2
        word = rng.choice(["good", "great"] if y else ["bad", "awful"])
        texts.append(f"{rng.choice(SUBJECTS)} was {word}")
        labels.append(y)
    return TextDataset("toy", texts, labels, ["negative", "positive"])


# --- learning ---


def test_learns_a_separable_task(tiny_bert_classifier: LoadedModel) -> None:
    data = _sentiment()
    before = classification_quality(tiny_bert_classifier, data)["accuracy"]
    assert before <= 60  # random init: about chance
    model = tiny_bert_classifier.model
    out = finetune(model, tiny_bert_classifier.tokenizer, data, FinetuneConfig(epochs=6, batch_size=8, lr=3e-3))
    assert out is model  # trained in place
    assert not model.training
    after = classification_quality(tiny_bert_classifier, data)
    assert after["accuracy"] >= 90
    assert after["macro_f1"] >= 90
    # and it generalises to unseen sentences of the same kind
    assert classification_quality(tiny_bert_classifier, _sentiment(32, seed=1))["accuracy"] >= 90


def test_same_seed_same_weights(tiny_bert_classifier: LoadedModel) -> None:
    data = _sentiment(16)
    tok = tiny_bert_classifier.tokenizer
    a, b, c = (copy.deepcopy(tiny_bert_classifier.model) for _ in range(3))
    finetune(a, tok, data, FinetuneConfig(epochs=1, batch_size=4, lr=1e-3, seed=3))
    finetune(b, tok, data, FinetuneConfig(epochs=1, batch_size=4, lr=1e-3, seed=3))
    finetune(c, tok, data, FinetuneConfig(epochs=1, batch_size=4, lr=1e-3, seed=4))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    orig = tiny_bert_classifier.model.state_dict()
    assert not torch.equal(sa["classifier.weight"], orig["classifier.weight"])


# --- custom loss ---


def test_custom_loss_gets_the_batch_indices(tiny_bert_classifier: LoadedModel) -> None:
    data = _sentiment(10)
    calls: list[tuple[list[int], list[int], tuple[int, ...]]] = []

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor, idx: list[int]) -> torch.Tensor:
        calls.append((list(idx), labels.tolist(), tuple(logits.shape)))
        return F.cross_entropy(logits, labels)

    finetune(
        tiny_bert_classifier.model,
        tiny_bert_classifier.tokenizer,
        data,
        FinetuneConfig(epochs=1, batch_size=4),
        loss_fn=loss_fn,
    )
    assert len(calls) == 3  # ceil(10 / 4) steps
    seen = [i for idx, _, _ in calls for i in idx]
    assert sorted(seen) == list(range(10))
    assert sorted(len(idx) for idx, _, _ in calls) == [2, 4, 4]
    for idx, labels, shape in calls:
        assert labels == [data.labels[i] for i in idx]
        assert shape == (len(idx), 2)


def test_custom_loss_drives_training(tiny_bert_classifier: LoadedModel) -> None:
    """A loss that pushes every example towards class 0 (via the indices) makes the model predict class 0."""
    data = _sentiment(16)
    target = torch.zeros(len(data), dtype=torch.long)
    assert tiny_bert_classifier.predict(data.texts).argmax(-1).tolist() != [0] * len(data)  # not already there

    def to_zero(logits: torch.Tensor, labels: torch.Tensor, idx: list[int]) -> torch.Tensor:
        return F.cross_entropy(logits, target[idx])

    finetune(
        tiny_bert_classifier.model,
        tiny_bert_classifier.tokenizer,
        data,
        FinetuneConfig(epochs=3, batch_size=8, lr=3e-3),
        loss_fn=to_zero,
    )
    pred = tiny_bert_classifier.predict(data.texts).argmax(-1)
    assert pred.tolist() == [0] * len(data)


@pytest.mark.parametrize(("epochs", "steps"), [(0.5, 2), (1.0, 4), (2.5, 10)])
def test_fractional_epochs_set_the_step_count(tiny_bert_classifier: LoadedModel, epochs: float, steps: int) -> None:
    data = _sentiment(16)
    batches: list[list[int]] = []

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor, idx: list[int]) -> torch.Tensor:
        batches.append(list(idx))
        return F.cross_entropy(logits, labels)

    finetune(
        tiny_bert_classifier.model,
        tiny_bert_classifier.tokenizer,
        data,
        FinetuneConfig(epochs=epochs, batch_size=4, lr=1e-4),
        loss_fn=loss_fn,
    )
    assert len(batches) == steps
    if epochs >= 1:  # each full epoch sees every example once
        assert sorted(i for b in batches[:4] for i in b) == list(range(16))


# --- bad input ---


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": 0},
        {"epochs": -1},
        {"batch_size": 0},
        {"lr": 0},
        {"lr": -1e-3},
        {"warmup": 1.0},
        {"warmup": -0.1},
    ],
)
def test_bad_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(InfoptError) as info:
        FinetuneConfig(**kwargs)  # type: ignore[arg-type]
    assert "Bad fine-tuning settings" in info.value.problem


def test_good_config_edges() -> None:
    cfg = FinetuneConfig(epochs=0.01, batch_size=1, lr=1e-9, warmup=0.0)
    assert cfg.batch_size == 1


def test_empty_data(tiny_bert_classifier: LoadedModel) -> None:
    empty = TextDataset("empty", [], [], ["negative", "positive"])
    with pytest.raises(InfoptError, match="training data is empty"):
        finetune(tiny_bert_classifier.model, tiny_bert_classifier.tokenizer, empty)


# --- length-grouped batches ---


def _random_lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 500) for _ in range(n)]


@pytest.mark.parametrize(("n", "batch_size"), [(100, 8), (1000, 4), (7, 32), (1, 1), (64, 16)])
def test_batches_cover_every_index_once(n: int, batch_size: int) -> None:
    batches = list(length_grouped_batches(_random_lengths(n), batch_size, random.Random(0)))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(n))
    assert all(1 <= len(b) <= batch_size for b in batches)


def test_batch_count_in_one_chunk() -> None:
    batches = list(length_grouped_batches(_random_lengths(100), 8, random.Random(0)))
    assert len(batches) == 13  # 100 indices fit one chunk of 8 * 50: ceil(100 / 8) batches
    assert sorted(len(b) for b in batches) == [4] + [8] * 12


def test_batches_have_near_sorted_lengths() -> None:
    lengths = _random_lengths(100)
    batches = list(length_grouped_batches(lengths, 8, random.Random(1)))
    for b in batches:
        assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)
    # within one chunk, batches are consecutive runs of the sorted lengths: their ranges do not overlap
    ranges = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in itertools.pairwise(ranges))


def test_grouping_cuts_padding_across_chunks() -> None:
    lengths = _random_lengths(2000, seed=2)
    batches = list(length_grouped_batches(lengths, 8, random.Random(0)))  # 5 chunks of 400

    def spread(bs: list[list[int]]) -> float:
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in bs) / len(bs)

    order = list(range(2000))
    random.Random(0).shuffle(order)
    naive = [order[i : i + 8] for i in range(0, 2000, 8)]
    assert spread(batches) < spread(naive) / 10


def test_batches_are_shuffled_and_seeded() -> None:
    lengths = _random_lengths(200)
    a = list(length_grouped_batches(lengths, 8, random.Random(5)))
    b = list(length_grouped_batches(lengths, 8, random.Random(5)))
    c = list(length_grouped_batches(lengths, 8, random.Random(6)))
    assert a == b
    assert a != c
    # batch order is shuffled, not shortest-first
    firsts = [lengths[bt[0]] for bt in a]
    assert firsts != sorted(firsts)


def test_no_lengths_no_batches() -> None:
    assert list(length_grouped_batches([], 8, random.Random(0))) == []
