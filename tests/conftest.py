"""Shared fixtures: tiny random-init models (seeded) that use MiniLM-L6's packaged tokenizer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import torch
import uvicorn
from fastapi import FastAPI
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

from infopt.data import TextDataset
from infopt.models import LoadedModel, Manifest, bundled_path
from infopt.serve import ServerState


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


def pytest_configure(config: pytest.Config) -> None:
    """Each pytest-xdist worker gets its share of the cores (torch, ONNX Runtime, and the processes tests start, via
    OMP_NUM_THREADS): two workers on two threads each spin on each other's cores (the smooth-int8 quantization took
    105 s beside a twin on a 2-core EPYC, 41 s on one thread each)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        share = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)


@pytest.fixture(autouse=True, scope="session")
def _private_builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Variants that `infopt optimize` keeps for reuse ($INFOPT_BUILDS) go to a temporary folder, not the real cache."""
    before = os.environ.get("INFOPT_BUILDS")
    os.environ["INFOPT_BUILDS"] = str(tmp_path_factory.mktemp("infopt-builds"))
    yield
    if before is None:
        os.environ.pop("INFOPT_BUILDS", None)
    else:
        os.environ["INFOPT_BUILDS"] = before


@pytest.fixture
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """$INFOPT_CACHE in a temporary folder, so teacher-output caches of tiny models stay out of the real one."""
    monkeypatch.setenv("INFOPT_CACHE", str(tmp_path_factory.mktemp("infopt-cache")))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run the test on one torch thread: tiny models only pay for thread hand-offs on a small machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- tiny labelled data and a tiny trained classifier (distillation, calibration, the CLI) ---

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


@contextlib.contextmanager
def _serving(args: list[str], log: Path, cwd: Path | None = None) -> Iterator[str]:
    """`infopt serve ARGS --port FREE` as a real process (stdout and stderr in `log`), ready; yields its URL and
    after the block stops it with SIGTERM and checks that it drained and exited 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    infopt = str(Path(sys.executable).parent / "infopt")
    with log.open("w") as out:
        proc = subprocess.Popen([infopt, "serve", *args, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                cwd=cwd)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    if httpx.get(url + "/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.1)
            yield url
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def serve_process() -> Callable[..., contextlib.AbstractContextManager[str]]:
    """`with serve_process(args, log_path, cwd=None) as url:` runs `infopt serve` for real on a free port."""
    return _serving


T = TypeVar("T")


class LiveServer:
    """A real uvicorn server for `app` in a background thread, on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state: ServerState = app.state.infopt
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.serve(sockets=[self.sock])

        asyncio.run(main())

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def wait_ready(self, timeout_s: float = 60) -> LiveServer:
        deadline = time.monotonic() + timeout_s
        while httpx.get(self.url + "/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready: {httpx.get(self.url + '/ready').text}")
            time.sleep(0.02)
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
        """Run a coroutine on the server's event loop and wait for it."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def live() -> Iterator[Any]:
    """`live(app)` starts a LiveServer; all are stopped after the test."""
    servers: list[LiveServer] = []

    def start(app: FastAPI) -> LiveServer:
        servers.append(LiveServer(app).start())
        return servers[-1]

    yield start
    for s in servers:
        s.stop()
