"""Shared fixtures: tiny random-init models (seeded) that use MiniLM-L6's packaged tokenizer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from infopt.models import LoadedModel, Manifest, bundled_path


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerBase:
    """The all-MiniLM-L6-v2 tokenizer (bert-base-uncased vocab, 30,522 tokens), read from its package."""
    return AutoTokenizer.from_pretrained(bundled_path("minilm-l6"))


def _seeded(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build().eval()


def _bert_config(tokenizer: PreTrainedTokenizerBase, **extra: object) -> BertConfig:
    return BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, **extra,
    )


def _from_config(auto: type, config: PretrainedConfig) -> torch.nn.Module:
    return _seeded(lambda: auto.from_config(config, dtype=torch.float32))  # type: ignore[attr-defined]


@pytest.fixture
def tiny_bert_classifier(tokenizer: PreTrainedTokenizerBase) -> LoadedModel:
    """BertForSequenceClassification, 2 layers, hidden 32, labels negative / positive."""
    config = _bert_config(tokenizer, id2label={0: "negative", 1: "positive"},
                          label2id={"negative": 0, "positive": 1})
    model = _from_config(AutoModelForSequenceClassification, config)
    manifest = Manifest(name="tiny-bert-classifier", task="classification", labels=["negative", "positive"])
    return LoadedModel(model, tokenizer, manifest)


@pytest.fixture
def tiny_bert_embedder(tokenizer: PreTrainedTokenizerBase) -> LoadedModel:
    """BertModel, 2 layers, hidden 32: 32-dim mean-pooled embeddings."""
    model = _from_config(AutoModel, _bert_config(tokenizer))
    return LoadedModel(model, tokenizer, Manifest(name="tiny-bert-embedder", task="embedding"))


@pytest.fixture
def tiny_llama(tokenizer: PreTrainedTokenizerBase) -> LoadedModel:
    """LlamaForCausalLM, 2 layers, hidden 32, 4 heads / 2 KV heads, tied embeddings."""
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    model = _from_config(AutoModelForCausalLM, config)
    return LoadedModel(model, tokenizer, Manifest(name="tiny-llama", task="causal-lm"))


@pytest.fixture
def reviews_csv(tmp_path: Path) -> Path:
    """A 40-row user CSV with columns review / sentiment (positive / negative)."""
    path = tmp_path / "reviews.csv"
    rows = [("a good and great film", "positive"), ("a bad and awful film", "negative")] * 20
    path.write_text("review,sentiment\n" + "".join(f"{t},{y}\n" for t, y in rows))
    return path


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run the test on one torch thread: tiny models only pay for thread hand-offs on a small machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
