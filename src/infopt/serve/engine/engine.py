"""The engine: requests in (token ids and sampling params), tokens out, one `step()` at a time.

    engine = LLMEngine(model, EngineConfig(kv_cache_mb=128, max_num_seqs=16))
    engine.add_request("a", prompt_ids, SamplingParams(max_tokens=64))
    while engine.has_unfinished():
        for out in engine.step():
            ...  # out.new_token_ids, out.finished, out.finish_reason

Each step schedules (continuous batching), runs the model once over every scheduled token, samples and applies the
stop rules. It knows nothing about tokenizers or HTTP: stop strings need the `decode` callback.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from infopt.errors import UserError
from infopt.serve.engine._auto import resolve_weights
from infopt.serve.engine.config import EngineConfig, SamplingParams
from infopt.serve.engine.kv_cache import KVCacheManager
from infopt.serve.engine.model import LlamaRunner, model_shape, num_blocks_for
from infopt.serve.engine.sampling import SampleJob, sample
from infopt.serve.engine.scheduler import Request, RequestOutput, Scheduler, SchedulerOutput

__all__ = ["EngineStats", "LLMEngine", "model_eos_token_ids"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of the engine: queues, KV pool, prefix cache, preemptions and speculation."""

    num_running: int
    num_waiting: int
    num_blocks: int
    num_free_blocks: int
    kv_usage: float
    prefix_queries: int
    prefix_hits: int
    num_preemptions: int
    num_steps: int
    num_draft_tokens: int
    num_accepted_tokens: int

    @property
    def prefix_hit_rate(self) -> float:
        """Share of looked-up prompt tokens found in the prefix cache."""
        return self.prefix_hits / self.prefix_queries if self.prefix_queries else 0.0

    @property
    def accept_rate(self) -> float:
        """Share of draft tokens the target agreed with."""
        return self.num_accepted_tokens / self.num_draft_tokens if self.num_draft_tokens else 0.0


def model_eos_token_ids(model: Any) -> frozenset[int]:
    """The end-of-sequence ids Hugging Face `generate` stops at: the generation config's, else the model config's."""
    for config in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(config, "eos_token_id", None)
        if value is not None:
            return frozenset([value] if isinstance(value, int) else value)
    return frozenset()


class LLMEngine:
    """Continuous-batching generation over a paged KV cache for a Hugging Face Llama model."""

    def __init__(self, model: torch.nn.Module, config: EngineConfig | None = None, *,
                 decode: Callable[[list[int]], str] | None = None,
                 eos_token_ids: Sequence[int] | None = None) -> None:
        self.config = config = config or EngineConfig()
        dtype = _DTYPES[config.dtype]
        shape = model_shape(model.config)
        self.max_model_len = config.max_model_len or shape.max_position
        if self.max_model_len > shape.max_position:
            raise UserError(f"EngineConfig.max_model_len is {self.max_model_len}, beyond the model's "
                            f"{shape.max_position} positions.", f"pass max_model_len= at most {shape.max_position}.")
        num_blocks = num_blocks_for(shape, config.block_size, dtype, config.kv_cache_mb)
        self.weights = resolve_weights(config.weights, model, config.max_num_seqs)
        """The linear weights' format the runner uses ("auto" resolved)."""
        self.runner = LlamaRunner(model, num_blocks, config.block_size, dtype, self.weights)
        self.kv = KVCacheManager(num_blocks, config.block_size, config.enable_prefix_caching)
        eos = model_eos_token_ids(model) if eos_token_ids is None else frozenset(eos_token_ids)
        self.scheduler = Scheduler(config, self.kv, self.max_model_len, eos, decode)
        self.decode = decode
        self.generator = torch.Generator().manual_seed(config.seed)
        self.num_steps = 0
        self.last_schedule: SchedulerOutput | None = None
        """What the last `step()` ran (its sequences and tokens), for metrics."""
        self._ids = itertools.count()

    # ------------------------------------------------------------ requests

    def add_request(self, request_id: str, prompt_token_ids: Sequence[int],
                    params: SamplingParams | None = None) -> None:
        """Queue a request; it runs from the next `step()`. Bad input is a UserError."""
        params = params or SamplingParams()
        prompt = list(prompt_token_ids)
        vocab = self.runner.shape.vocab_size
        if not isinstance(request_id, str) or not request_id:
            raise UserError(f"The request id {request_id!r} is not a non-empty string.", "pass a string id.")
        if request_id in self.scheduler.requests:
            raise UserError(f"The request id {request_id!r} is already running.", "pass a new request id.")
        if not prompt or not all(isinstance(t, int) and 0 <= t < vocab for t in prompt):
            raise UserError("The prompt is not a non-empty list of token ids.", f"pass ids in [0, {vocab}).")
        if len(prompt) >= self.max_model_len:
            raise UserError(f"The prompt has {len(prompt)} tokens; the model takes {self.max_model_len} in all.",
                            "shorten the prompt.")
        need = self.kv.blocks_needed(min(len(prompt) + params.max_tokens + self.config.speculative_tokens,
                                         self.max_model_len))
        if need > self.kv.num_blocks:
            raise UserError(f"The request needs {need} KV blocks; the pool has {self.kv.num_blocks}.",
                            "raise EngineConfig.kv_cache_mb, or lower max_tokens.")
        if params.stop and self.decode is None:
            raise UserError("Stop strings need the engine's decode callback.", "pass decode= to LLMEngine.")
        generator = self.generator
        if params.seed is not None:
            generator = torch.Generator().manual_seed(params.seed)
        self.scheduler.add(Request(request_id, prompt, params, generator))

    def abort(self, request_id: str) -> bool:
        """Stop a request and free its blocks; False when it is unknown or already finished."""
        return self.scheduler.abort(request_id)

    def has_unfinished(self) -> bool:
        """Whether any request is waiting or running."""
        return self.scheduler.has_unfinished()

    # ------------------------------------------------------------ stepping

    def step(self) -> list[RequestOutput]:
        """Run one step; the requests that got tokens (or finished) this step."""
        output = self.last_schedule = self.scheduler.schedule()
        if not output.seqs:
            return []
        self.num_steps += 1
        logits = self.runner.execute(output)  # [R, V]
        jobs: list[SampleJob] = []
        ids: list[str] = []
        for seq in output.seqs:
            if seq.num_logits:
                request = self.scheduler.requests[seq.request_id]
                jobs.append(SampleJob(request.params, request.generator, request.token_ids, seq.num_logits,
                                      seq.draft_token_ids))
                ids.append(seq.request_id)
        results = sample(logits, jobs)
        sampled = {i: tokens for i, (tokens, _) in zip(ids, results, strict=True)}
        logprobs = {i: probs for i, (_, probs) in zip(ids, results, strict=True) if probs is not None}
        return self.scheduler.update_from_output(output, sampled, logprobs)

    def generate(self, prompts: Sequence[Sequence[int]],
                 params: SamplingParams | Sequence[SamplingParams] | None = None) -> list[list[int]]:
        """The output tokens of each prompt, all run together (loops `step()` until they finish)."""
        each = list(params) if isinstance(params, Sequence) else [params or SamplingParams()] * len(prompts)
        if len(each) != len(prompts):
            raise UserError(f"generate got {len(prompts)} prompts and {len(each)} SamplingParams.",
                            "pass one SamplingParams, or one per prompt.")
        ids = [f"generate-{next(self._ids)}" for _ in prompts]
        for request_id, prompt, p in zip(ids, prompts, each, strict=True):
            self.add_request(request_id, prompt, p)
        tokens: dict[str, list[int]] = {i: [] for i in ids}
        pending = set(ids)
        while pending and self.has_unfinished():
            for out in self.step():
                if out.request_id in tokens:
                    tokens[out.request_id].extend(out.new_token_ids)
                    if out.finished:
                        pending.discard(out.request_id)
        return [tokens[i] for i in ids]

    @property
    def stats(self) -> EngineStats:
        """Queues, KV pool, prefix cache, preemptions and speculation, now."""
        s, kv = self.scheduler, self.kv
        return EngineStats(len(s.running), len(s.waiting), kv.num_blocks, kv.num_free_blocks, kv.usage,
                           kv.prefix_queries, kv.prefix_hits, s.num_preemptions, self.num_steps,
                           s.num_draft_tokens, s.num_accepted_tokens)
