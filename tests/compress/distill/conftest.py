"""Distillation test fixtures: one torch thread, a private cache folder, tiny data, tiny classifiers."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, PreTrainedTokenizerBase

from infopt.data import TextDataset
from infopt.models import LoadedModel, Manifest

GOOD = ["great", "wonderful", "moving", "brilliant", "funny", "charming", "sharp", "fresh"]
BAD = ["dull", "boring", "awful", "tedious", "flat", "stale", "clumsy", "weak"]
FILL = ["the", "film", "movie", "is", "a", "story", "cast", "plot", "really", "quite", "and", "but"]


def make_reviews(n: int = 96, seed: int = 0, names: tuple[str, str] = ("negative", "positive")) -> TextDataset:
    """Tiny two-class data: a sentiment word among filler words decides the label."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 2
        words = [*rng.sample(FILL, 4), rng.choice(GOOD if y else BAD)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(y)
    return TextDataset("reviews", texts, labels, list(names))


def foreign_tokenizer() -> PreTrainedTokenizerBase:
    """A word-level tokenizer unlike MiniLM's WordPiece (different ids and lengths), for multi-teacher tests."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *GOOD, *BAD, *FILL]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP] [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def tiny_classifier(
    tokenizer: PreTrainedTokenizerBase, layers: int = 2, hidden: int = 32, seed: int = 0,
    labels: tuple[str, ...] = ("negative", "positive"), name: str = "tiny-teacher",
) -> LoadedModel:
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=128, id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32).eval()
    return LoadedModel(model, tokenizer, Manifest(name=name, task="classification", labels=list(labels)))


def train_briefly(model: LoadedModel, data: TextDataset, epochs: float = 20.0) -> LoadedModel:
    """Fine-tune a tiny classifier on the tiny data so it has something to teach."""
    from infopt.train import FinetuneConfig, finetune

    finetune(model.model, model.tokenizer, data, FinetuneConfig(epochs=epochs, batch_size=16, lr=1e-3, max_length=16))
    return model


@pytest.fixture(autouse=True)
def _one_thread_private_cache(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    one_torch_thread: None,
) -> None:
    """Fast tests write teacher caches to a temporary folder; slow tests keep the real cache (built models)."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("INFOPT_CACHE", str(tmp_path_factory.mktemp("infopt-cache")))


@pytest.fixture(scope="session")
def reviews() -> TextDataset:
    return make_reviews()


@pytest.fixture(scope="session")
def tiny_teacher(tokenizer: PreTrainedTokenizerBase, reviews: TextDataset) -> LoadedModel:
    """A 4-layer tiny classifier trained on `reviews` (4 layers so a 2-layer student is every other layer)."""
    return train_briefly(tiny_classifier(tokenizer, layers=4), reviews)


@pytest.fixture
def make_classifier() -> Callable[..., LoadedModel]:
    """tiny_classifier(tokenizer, layers=2, hidden=32, seed=0, labels=(...), name=...)."""
    return tiny_classifier


@pytest.fixture
def make_data() -> Callable[..., TextDataset]:
    """make_reviews(n=96, seed=0, names=("negative", "positive"))."""
    return make_reviews


@pytest.fixture
def foreign_tok() -> PreTrainedTokenizerBase:
    return foreign_tokenizer()


@pytest.fixture
def train() -> Callable[..., LoadedModel]:
    """train_briefly(model, data, epochs=20.0)."""
    return train_briefly
