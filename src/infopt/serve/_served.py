"""One served model: a `LoadedModel`, its token limit, its labels, its batcher and (causal LMs) its generator."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from infopt.evaluate import at_threads
from infopt.models import LoadedModel, OnnxModel
from infopt.serve._batcher import Batcher, BatchObserver
from infopt.serve._config import BatchingConfig
from infopt.serve._engine_config import ServeEngineConfig
from infopt.serve._engine_worker import engine_worker
from infopt.serve._errors import RequestError, WrongTask
from infopt.serve._generate import eos_token_ids, run_generation
from infopt.serve._lm_protocol import LMWorker
from infopt.serve._lm_worker import GenerationWorker, Job

__all__ = ["Encoded", "ServedModel", "batch_workers", "threads_shared", "token_limit"]

_UNBOUNDED = 1_000_000

Encoded = dict[str, list[int]]
"""One tokenized text: `input_ids` and whatever else the tokenizer gives (`token_type_ids`), unpadded."""


def token_limit(loaded: LoadedModel) -> int:
    """The most tokens one text may have: the smaller of the tokenizer's and the model's position limits."""
    limits = [int(loaded.tokenizer.model_max_length)]
    config = getattr(loaded.model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int):
        limits.append(positions)
    usable = [n for n in limits if 0 < n < _UNBOUNDED]
    return min(usable) if usable else 512


def batch_workers(loaded: LoadedModel, batching: BatchingConfig) -> int:
    """Batches of this model that run at once: `batching.workers` for an ONNX Runtime session (it takes concurrent
    calls), else 1."""
    return batching.workers if isinstance(loaded.model, OnnxModel) else 1


def threads_shared(loaded: LoadedModel, workers: int) -> LoadedModel:
    """The model as each of `workers` concurrent batches runs it: its own session on threads // workers threads
    (the model itself for one worker)."""
    return at_threads(loaded, max(1, loaded.model.threads // workers)) if workers > 1 else loaded


def _labels(loaded: LoadedModel) -> list[str]:
    if loaded.manifest.labels:
        return list(loaded.manifest.labels)
    id2label = getattr(getattr(loaded.model, "config", None), "id2label", None) or {}
    return [str(label) for _, label in sorted((int(i), label) for i, label in id2label.items())]


class ServedModel:
    """Counts tokens, checks limits and answers classify / embed requests through its `batcher`, and (causal
    LMs) generation requests through its `generator`: the paged engine (`engine` "paged", continuous batching)
    for the models it runs, else the plain loop one at a time ("hf")."""

    def __init__(self, name: str, loaded: LoadedModel, batching: BatchingConfig,
                 observer: BatchObserver | None = None, engine: ServeEngineConfig | None = None) -> None:
        self.name = name
        self.workers = batch_workers(loaded, batching)
        """Batches run at once: each on its share of the model's threads (`_narrow`), or all of them when it is the
        only batch and nothing waits (a lone request at low load is not slowed by the split)."""
        self.loaded = loaded
        self._narrow = threads_shared(loaded, self.workers)
        self.task = loaded.task
        self.max_tokens = token_limit(loaded)
        self.labels = _labels(loaded) if self.task == "classification" else []
        self.created = int(time.time())
        # fast tokenizers must not be used from two threads at once ("Already borrowed"): the event loop counts
        # tokens with its own copy while the batcher's thread tokenizes batches with the original
        self._counter = copy.deepcopy(loaded.tokenizer)
        hidden = getattr(getattr(loaded.model, "config", None), "hidden_size", None)
        self.dimensions: int | None = hidden if self.task == "embedding" and isinstance(hidden, int) else None
        self._may_pack = batching.packing and self.task in ("classification", "embedding")
        self.packing = False
        """Batches are packed (`LoadedModel.forward_packed`): no padding, so the batcher takes the oldest texts
        instead of grouping them by length. Set by `probe_packing`."""
        self.batcher: Batcher[Encoded, list[float]] = Batcher(self._run, batching, name=name, length=self._length,
                                                              observer=observer, workers=self.workers)
        pad = loaded.tokenizer.pad_token_id
        self._pad_id = int(pad) if isinstance(pad, int) else 0
        self._pad_left = getattr(loaded.tokenizer, "padding_side", "right") == "left"
        self.generator: LMWorker | None = None
        self.engine: str | None = None
        self.eos_ids: frozenset[int] = frozenset()
        if self.task == "causal-lm":
            self.eos_ids = eos_token_ids(loaded.model, loaded.tokenizer)
            paged = engine_worker(name, loaded.model, self._counter, engine or ServeEngineConfig(), batching,
                                  self.max_tokens, self.eos_ids, observer)
            if paged is not None:
                self.generator, self.engine = paged, "paged"
                self.max_tokens = min(self.max_tokens, paged.engine.max_model_len)
            else:
                self.generator = GenerationWorker(self._generate, batching, name=name, observer=observer)
                self.engine = "hf"
        self.has_chat_template = bool(getattr(loaded.tokenizer, "chat_template", None))

    @property
    def depth(self) -> int:
        """Requests waiting for the model."""
        return self.batcher.depth + (self.generator.depth if self.generator is not None else 0)

    def start(self) -> None:
        """Start the batcher (and generator) on the running event loop."""
        self.batcher.start()
        if self._may_pack and not self.packing:
            self.batcher.call_in_worker(self.probe_packing)
        if self.generator is not None:
            self.generator.start()

    async def drain(self, timeout_s: float | None = None) -> None:
        """Finish the accepted requests and stop (see Batcher.drain, GenerationWorker.drain)."""
        drains = [self.batcher.drain(timeout_s)]
        if self.generator is not None:
            drains.append(self.generator.drain(timeout_s))
        await asyncio.gather(*drains)

    def probe_packing(self) -> bool:
        """Decide `packing` by the model's check that packed outputs match padded ones (`LoadedModel.packs`; runs
        the model). `start` runs it on the batcher's own thread, ahead of any batch: run on another thread, it made
        every later one-text call of the torch teacher about 2.5 ms slower (a 2-core EPYC)."""
        self.packing = self._may_pack and self.loaded.packs
        return self.packing

    def _length(self, item: Encoded) -> int:
        """What the batcher groups by: the token count, or nothing for packed batches (no padding to save)."""
        return 0 if self.packing else len(item["input_ids"])

    def _encode(self, texts: list[str], truncate: bool = False) -> list[Encoded]:
        kwargs = {"truncation": True, "max_length": self.max_tokens} if truncate else {"truncation": False}
        enc = self._counter(texts, add_special_tokens=True, verbose=False, **kwargs)
        keys = [k for k in enc if k != "attention_mask"]
        return [{k: list(enc[k][i]) for k in keys} for i in range(len(texts))]

    def check(self, task: str, texts: list[str], truncate: bool) -> list[Encoded]:
        """The texts tokenized as the model sees them (once: the batch reuses them); raises WrongTask, or
        RequestError for a text over the token limit unless `truncate`, which cuts it to the limit."""
        if self.task != task:
            raise WrongTask(f"Model {self.name!r} is a {self.task} model; this endpoint needs a {task} model.",
                            f"send the request to a {task} model (see GET /v1/models).")
        encoded = self._encode(texts)
        over = [i for i, e in enumerate(encoded) if len(e["input_ids"]) > self.max_tokens]
        if over and not truncate:
            n = len(encoded[over[0]]["input_ids"])
            raise RequestError(
                f"Input {over[0]} has {n} tokens; model {self.name!r} takes at most "
                f"{self.max_tokens}" + (f" ({len(over)} inputs are too long)." if len(over) > 1 else "."),
                'shorten it, or send "truncate": true to cut it to the limit.', code="input_too_long",
                param="input")
        if over:
            for i, cut in zip(over, self._encode([texts[i] for i in over], truncate=True), strict=True):
                encoded[i] = cut
        return encoded

    async def infer(self, encoded: list[Encoded]) -> list[list[float]]:
        """Probabilities (classification) or unit vectors (embedding), one list per text, batched."""
        return await self.batcher.submit(encoded)

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of a completion prompt (with the tokenizer's special tokens, as HF `generate` sees it)."""
        return list(self._counter(prompt, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    def chat_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of a chat through the tokenizer's chat template, with the generation prompt."""
        if not self.has_chat_template:
            raise WrongTask(f"Model {self.name!r} has no chat template.", "use POST /v1/completions with a prompt.")
        try:
            chat = [dict(m) for m in messages]
            text = self._counter.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # jinja errors: a template that refuses these roles, say
            raise RequestError(f"The chat template of model {self.name!r} refused the messages ({e}).",
                               "check the roles and their order.", code="invalid_messages", param="messages") from None
        ids = self._counter(str(text), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        return list(ids)

    def _generate(self, job: Job) -> None:
        """One generation (on the generator's thread)."""
        run_generation(self.loaded.model, self.loaded.tokenizer, job.prompt_ids, job.sampling, job, self.eos_ids)

    def collate(self, items: list[Encoded]) -> dict[str, torch.Tensor]:
        """One padded batch (as the tokenizer would pad it) of texts tokenized by `check`."""
        longest = max(len(item["input_ids"]) for item in items)
        batch = {}
        for key in [*items[0], "attention_mask"]:
            fill = self._pad_id if key == "input_ids" else 0
            out = np.full((len(items), longest), fill, dtype=np.int64)
            for row, item in zip(out, items, strict=True):
                values = item[key] if key != "attention_mask" else [1] * len(item["input_ids"])
                if self._pad_left:
                    row[longest - len(values):] = values
                else:
                    row[: len(values)] = values
            batch[key] = torch.from_numpy(out)
        return batch

    def _run(self, items: list[Encoded]) -> list[list[float]]:
        """One model call (on a batcher thread)."""
        alone = self.batcher.running <= 1 and self.batcher.depth == 0  # this batch only, and nothing waits
        model = self.loaded if alone else self._narrow
        if self.packing and len(items) > 1:
            out = model.forward_packed(items).float()
        else:
            out = model.forward(self.collate(items)).float()
        if self.task == "classification":
            out = torch.softmax(out, dim=-1)
        result: list[list[float]] = out.tolist()
        return result

    def info(self) -> dict[str, Any]:
        """The OpenAI model object plus what infopt knows of the model."""
        m = self.loaded.manifest
        return {
            "id": self.name, "object": "model", "created": self.created, "owned_by": "infopt",
            "task": self.task, "fingerprint": m.fingerprint, "recipe": m.recipe, "format": m.format,
            "method": m.method, "source_name": m.name, "labels": self.labels, "max_tokens": self.max_tokens,
            "dimensions": self.dimensions, "chat_template": self.has_chat_template, "engine": self.engine,
            "packing": self.packing, "batch_workers": self.workers,
        }
