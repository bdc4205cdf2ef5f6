"""One generation on the model's thread: a token loop over the model's KV cache (greedy, or sampled with a
per-request seeded generator, temperature and top_p), incremental detokenization and stop strings.

The loop equals Hugging Face `generate` token for token when greedy (`temperature` 0). It checks the job's stop
flag between tokens, so a client that goes away, a timeout or a drain ends the generation at the next token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import PreTrainedTokenizerBase

__all__ = ["Detokenizer", "GenerationSink", "Sampling", "eos_token_ids", "pick_token", "run_generation"]


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens: `temperature` 0 is greedy; `seed` makes sampling repeatable; `stop` strings end it;
    `logprobs` asks for the log-probability of each chosen token (the paged engine only)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False


class GenerationSink(Protocol):
    """Where a generation reports (from the model's thread)."""

    @property
    def cancelled(self) -> bool: ...
    def token(self) -> None: ...
    def emit(self, text: str) -> None: ...
    def finish(self, reason: str) -> None: ...


def eos_token_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Token ids that end a generation: the generation config's (else the model config's) and the tokenizer's."""
    ids: set[int] = set()
    config = getattr(model, "generation_config", None) or getattr(model, "config", None)
    value = getattr(config, "eos_token_id", None)
    ids.update([value] if isinstance(value, int) else list(value or []))
    if isinstance(tokenizer.eos_token_id, int):
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


class Detokenizer:
    """Text deltas of a growing list of token ids; holds back a tail that may begin a stop string, and cuts the
    text at the first stop string. Decodes a short window only (the offsets of vLLM's incremental decoding)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: Iterable[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.text = ""
        self.stopped = False
        self._emitted = 0
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def _held(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of a stop string."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:k]):
                    best = k
                    break
        return best

    def _advance(self, final: bool) -> str:
        before = self._decode(self.ids[self._prefix:self._read])
        now = self._decode(self.ids[self._prefix:])
        if len(now) > len(before) and (final or not now.endswith("\ufffd")):
            self.text += now[len(before):]
            self._prefix, self._read = self._read, len(self.ids)
        hits = [i for i in (self.text.find(s, self._emitted) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[:min(hits)]
            self.stopped = True
        end = len(self.text) if final or self.stopped else len(self.text) - self._held()
        delta = self.text[self._emitted:end]
        self._emitted = max(self._emitted, end)
        return delta

    def add(self, token_id: int) -> str:
        """The new text that `token_id` makes safe to send (maybe empty); `stopped` says a stop string came."""
        self.ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """The text held back so far (at the end of the generation)."""
        return "" if self.stopped else self._advance(final=True)


def pick_token(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    """The next token from [V] logits: argmax at temperature 0, else a draw from the top_p nucleus."""
    if sampling.temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p >= 1:
        return int(torch.multinomial(probs, 1, generator=generator))
    sorted_p, order = torch.sort(probs, descending=True)
    keep = torch.cumsum(sorted_p, 0) - sorted_p < sampling.top_p  # the first token always stays
    choice = torch.multinomial(sorted_p * keep, 1, generator=generator)
    return int(order[choice])


def _device(model: Any) -> torch.device:
    parameter = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return parameter.device if parameter is not None else torch.device("cpu")


def _cache_of(out: Any) -> dict[str, Any]:
    """The KV cache of a model output as the keyword the next call takes: `cache` (transformers >= 5.2x) or
    `past_key_values` (earlier); empty when the model gave none."""
    for name in ("cache", "past_key_values"):
        value = out.get(name) if isinstance(out, Mapping) else None
        if value is not None:
            return {name: value}
    return {}


@torch.inference_mode()
def run_generation(model: Any, tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int], sampling: Sampling,
                   sink: GenerationSink, eos_ids: frozenset[int] = frozenset()) -> None:
    """Generate up to `sampling.max_tokens` tokens after `prompt_ids`, reporting text to `sink`; finishes with
    "stop" (an end token or a stop string), "length" (max_tokens) or "cancelled" (the sink's flag)."""
    device = _device(model)
    generator = None
    if sampling.temperature > 0:
        generator = torch.Generator(device=device)
        if sampling.seed is None:
            generator.seed()
        else:
            generator.manual_seed(sampling.seed & 0xFFFF_FFFF_FFFF_FFFF)
    ids = torch.tensor([prompt_ids], device=device)
    inputs = ids
    cache: dict[str, Any] = {}
    detok = Detokenizer(tokenizer, sampling.stop)
    reason = "length"
    for _ in range(sampling.max_tokens):
        if sink.cancelled:
            reason = "cancelled"
            break
        out = model(input_ids=inputs, use_cache=True, **cache)
        logits = out["logits"] if isinstance(out, Mapping) else out.logits
        token = pick_token(logits[0, -1], sampling, generator)
        sink.token()
        if token in eos_ids:
            reason = "stop"
            break
        delta = detok.add(token)
        if delta:
            sink.emit(delta)
        if detok.stopped:
            reason = "stop"
            break
        cache = _cache_of(out)
        inputs = torch.tensor([[token]], device=device)
        if not cache:  # a model without a cache reads the whole sequence again
            ids = inputs = torch.cat([ids, inputs], dim=1)
    rest = detok.flush()
    if rest:
        sink.emit(rest)
    sink.finish(reason)
