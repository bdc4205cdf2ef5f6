"""Fixtures of the monitor tests: saved tiny classifiers (trained, untrained) and real uvicorn servers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi import FastAPI
from transformers import AutoModelForSequenceClassification, BertConfig, PreTrainedTokenizerBase

from infopt.models import LoadedModel, Manifest, save_model


@pytest.fixture(autouse=True)
def _no_response_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Response caches and the infopt cache folder in a temporary folder."""
    monkeypatch.setenv("INFOPT_CACHE", str(tmp_path / "infopt-cache"))


@pytest.fixture
def live(live: Callable[[FastAPI], Any]) -> Callable[[FastAPI], Any]:
    """The root `live(app)`, and each server also waits until it is ready."""
    return lambda app: live(app).wait_ready()


class Slow(torch.nn.Module):
    """A model whose every forward sleeps `delay_s` first (a candidate with added latency)."""

    def __init__(self, inner: torch.nn.Module, delay_s: float) -> None:
        super().__init__()
        self.inner, self.config, self.delay_s = inner, inner.config, delay_s

    def forward(self, **inputs: torch.Tensor) -> Any:
        time.sleep(self.delay_s)
        return self.inner(**inputs)


class Broken(torch.nn.Module):
    """A model whose every forward raises."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, **inputs: torch.Tensor) -> Any:
        raise RuntimeError("broken candidate")


@pytest.fixture(scope="session")
def classifiers(tokenizer: PreTrainedTokenizerBase, tiny_teacher: LoadedModel,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Saved tiny classifiers: `good` (conftest's tiny_teacher, trained on `reviews`) and `bad` (untrained)."""
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, id2label={0: "negative", 1: "positive"},
                        label2id={"negative": 0, "positive": 1})
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32).eval()
    bad = LoadedModel(model, tokenizer, Manifest(name="tiny-bad", task="classification",
                                                 labels=["negative", "positive"]))
    out = tmp_path_factory.mktemp("monitor-models")
    save_model(tiny_teacher, out / "good")
    save_model(bad, out / "bad")
    return {"good": out / "good", "bad": out / "bad"}


@pytest.fixture
def slowed() -> Callable[[LoadedModel, float], LoadedModel]:
    """`slowed(loaded, delay_s)`: the model with `delay_s` added to every forward."""
    return lambda loaded, delay_s: LoadedModel(Slow(loaded.model, delay_s), loaded.tokenizer, loaded.manifest)


@pytest.fixture
def broken() -> Callable[[LoadedModel], LoadedModel]:
    """`broken(loaded)`: the model with a forward that raises."""
    return lambda loaded: LoadedModel(Broken(loaded.model), loaded.tokenizer, loaded.manifest)
