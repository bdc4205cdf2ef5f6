"""Fixtures of the serve tests: tiny saved models, and real uvicorn servers on free loopback ports."""

from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertConfig,
    LlamaConfig,
    PreTrainedTokenizerBase,
)

from infopt.models import LoadedModel, Manifest, save_model
from infopt.serve import ModelSpec, ServeConfig, create_app
from tests.conftest import LiveServer  # type: ignore[import-not-found]


@pytest.fixture(scope="session", autouse=True)
def serve_cache_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The servers' default SQLite response cache in a temporary folder for the whole session (models still come
    from the real infopt cache)."""
    from infopt.serve.cache import _store_config

    path = tmp_path_factory.mktemp("serve-cache") / "responses.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_store_config, "default_path", lambda: path)
        yield path


def _tiny(tokenizer: PreTrainedTokenizerBase, auto: Any, **extra: Any) -> torch.nn.Module:
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, **extra)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return auto.from_config(config, dtype=torch.float32).eval()  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def model_dirs(tokenizer: PreTrainedTokenizerBase, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of a tiny classifier (negative / positive) and a tiny 32-dim embedder, 128-token limit."""
    root = tmp_path_factory.mktemp("serve-models")
    clf = _tiny(tokenizer, AutoModelForSequenceClassification, id2label={0: "negative", 1: "positive"},
                label2id={"negative": 0, "positive": 1})
    emb = _tiny(tokenizer, AutoModel)
    save_model(LoadedModel(clf, tokenizer, Manifest(name="tiny-clf", task="classification",
                                                    labels=["negative", "positive"])), root / "clf")
    save_model(LoadedModel(emb, tokenizer, Manifest(name="tiny-emb", task="embedding")), root / "emb")
    return {"clf": root / "clf", "emb": root / "emb"}


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


@pytest.fixture(scope="session")
def lm_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A copy of MiniLM's tokenizer with a simple chat template ("role: content" lines, then "assistant:")."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def tiny_lm(lm_tokenizer: PreTrainedTokenizerBase) -> LoadedModel:
    """conftest's tiny_llama (LlamaForCausalLM, 2 layers, hidden 32, 128 positions, eos [SEP]) with untied
    embeddings (tied random ones make greedy repeat the last token) and `lm_tokenizer`, for module servers."""
    config = LlamaConfig(
        vocab_size=len(lm_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False,
        pad_token_id=lm_tokenizer.pad_token_id, bos_token_id=lm_tokenizer.cls_token_id,
        eos_token_id=lm_tokenizer.sep_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    return LoadedModel(model, lm_tokenizer, Manifest(name="tiny-lm", task="causal-lm"))


def _sse_events(r: httpx.Response) -> list[Any]:
    assert r.headers["content-type"].startswith("text/event-stream"), r.headers
    events: list[Any] = []
    for line in r.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
        else:
            assert line == "", line
    return events


@pytest.fixture
def sse() -> Any:
    """`sse(response)`: the `data:` events of a server-sent-events response (parsed JSON, and "[DONE]")."""
    return _sse_events


@pytest.fixture(scope="module")
def server(model_dirs: dict[str, Path]) -> Iterator[LiveServer]:
    """Both tiny models, loaded from their folders, in one server with small limits (max_inputs 8)."""
    config = ServeConfig(models=(ModelSpec("clf", str(model_dirs["clf"])), ModelSpec("emb", str(model_dirs["emb"]))),
                         max_inputs=8, max_body_bytes=20_000)
    s = LiveServer(create_app(config)).start().wait_ready()
    yield s
    s.stop()


class Gate(torch.nn.Module):
    """Wraps a model: each forward announces itself on `entered` and waits for `opened` (or sleeps `delay_s`)."""

    def __init__(self, inner: torch.nn.Module, delay_s: float = 0.0, gated: bool = True) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.delay_s = delay_s
        self.entered = threading.Semaphore(0)
        self.opened = threading.Event()
        if not gated:
            self.opened.set()
        self.batch_sizes: list[int] = []

    def forward(self, **inputs: torch.Tensor) -> Any:
        self.batch_sizes.append(int(inputs["input_ids"].shape[0]))
        self.entered.release()
        self.opened.wait(30)
        time.sleep(self.delay_s)
        return self.inner(**inputs)


def _gated(loaded: LoadedModel, delay_s: float = 0.0, gated: bool = True) -> tuple[LoadedModel, Gate]:
    gate = Gate(loaded.model, delay_s, gated)
    return LoadedModel(gate, loaded.tokenizer, loaded.manifest), gate


@pytest.fixture
def gated() -> Any:
    """`gated(loaded, delay_s=0, gated=True)` -> (a LoadedModel whose forward passes a Gate, the Gate)."""
    return _gated


@pytest.fixture(scope="module")
def lm_server(tiny_lm: LoadedModel, tokenizer: PreTrainedTokenizerBase,
              model_dirs: dict[str, Path]) -> Iterator[LiveServer]:
    """`lm` (tiny_lm, with a chat template), `plain` (the same model, no chat template) and `emb` (the tiny
    embedder) in one server; price_per_hour 3.6 (a cent per 10 s)."""
    from infopt.models import load_model

    plain = LoadedModel(tiny_lm.model, tokenizer, tiny_lm.manifest)
    models = {"lm": tiny_lm, "plain": plain, "emb": load_model(model_dirs["emb"])}
    s = LiveServer(create_app(models, config=ServeConfig(models=(ModelSpec("x", "x"),), price_per_hour=3.6)))
    yield s.start()
    s.stop()


def wait_for_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float = 90) -> None:
    """Poll `url`/ready until 200; fail with the server's output if it exits, or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        try:
            if httpx.get(url + "/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the server at {url} did not become ready"
        time.sleep(0.1)
