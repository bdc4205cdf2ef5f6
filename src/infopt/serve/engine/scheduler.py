"""Continuous batching: which sequences run in a step, and how many tokens each.

Every step `schedule()` spends a token budget: first on the running sequences, oldest first (one token each when
decoding, plus draft tokens; a chunk of the prompt when still prefilling), then on waiting requests in arrival
order, admitted while the KV pool can give their first chunk's blocks. A running sequence that cannot get a block
takes them from the newest running one, which is preempted: its blocks go, it returns to the front of the queue
and is recomputed later (its prefix blocks may still be cached). The runner gets a `SchedulerOutput`; the tokens
it samples come back through `update_from_output`, which also applies the stop rules.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch

from infopt.serve.engine.config import EngineConfig, SamplingParams
from infopt.serve.engine.kv_cache import KVCacheManager
from infopt.serve.engine.sampling import find_stop_string
from infopt.serve.engine.spec import propose_ngram

__all__ = ["Request", "RequestOutput", "ScheduledSeq", "Scheduler", "SchedulerOutput"]


@dataclass(eq=False)
class Request:
    """One sequence and where it stands: its tokens (prompt, then output) and how many of them are in the cache."""

    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    generator: torch.Generator | None = None
    token_ids: list[int] = field(default_factory=list)
    num_computed: int = 0
    num_cached_prompt: int = 0
    num_preemptions: int = 0
    finish_reason: str | None = None
    stop_reason: int | str | None = None

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = list(self.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        """The tokens generated so far."""
        return self.token_ids[len(self.prompt_token_ids):]

    @property
    def num_output(self) -> int:
        """How many tokens were generated so far."""
        return len(self.token_ids) - len(self.prompt_token_ids)


@dataclass(frozen=True)
class ScheduledSeq:
    """One sequence in a step: feed `token_ids` at positions `start`, `start + 1`, ... (`start` tokens are in the
    cache already) into the blocks of `block_table`; return the logits of the last `num_logits` of them."""

    request_id: str
    token_ids: list[int]
    start: int
    block_table: list[int]
    num_logits: int
    draft_token_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class SchedulerOutput:
    """What one step runs, and the requests preempted to make room for it."""

    seqs: list[ScheduledSeq]
    preempted: list[str] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        """Tokens fed through the model this step."""
        return sum(len(s.token_ids) for s in self.seqs)


@dataclass(frozen=True)
class RequestOutput:
    """What a step gave one request: its new tokens (and their logprobs when asked), and whether it finished, and
    why: "stop" (a stop token or string: `stop_reason`), "length" (max_tokens or the model's length)."""

    request_id: str
    new_token_ids: list[int]
    finished: bool = False
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    new_logprobs: list[float] | None = None
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0


class Scheduler:
    """FCFS continuous batching with a token budget, chunked prefill, admission by free blocks and preemption."""

    def __init__(self, config: EngineConfig, kv: KVCacheManager, max_model_len: int,
                 eos_token_ids: Iterable[int] = (), decode: Callable[[list[int]], str] | None = None) -> None:
        self.config = config
        self.kv = kv
        self.max_model_len = max_model_len
        self.eos_token_ids = frozenset(eos_token_ids)
        self.decode = decode
        self.requests: dict[str, Request] = {}
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.num_preemptions = 0
        """Times a running sequence gave its blocks back."""
        self.num_draft_tokens = 0
        """Draft tokens checked by the target."""
        self.num_accepted_tokens = 0
        """Of those, tokens the target agreed with."""

    def add(self, request: Request) -> None:
        """Queue a new request (its id must be new)."""
        if request.request_id in self.requests:
            raise ValueError(f"request {request.request_id!r} is already in the scheduler")
        self.requests[request.request_id] = request
        self.waiting.append(request)

    def has_unfinished(self) -> bool:
        """Whether any request is waiting or running."""
        return bool(self.requests)

    def abort(self, request_id: str) -> bool:
        """Drop a request wherever it is and free its blocks; False when it is unknown or finished."""
        request = self.requests.pop(request_id, None)
        if request is None:
            return False
        if request in self.running:
            self.running.remove(request)
        else:
            self.waiting.remove(request)
        self.kv.free(request_id)
        request.finish_reason = "abort"
        return True

    # ------------------------------------------------------------ scheduling

    def schedule(self) -> SchedulerOutput:
        """Pick this step's sequences and token counts, allocating their blocks (preempting when needed)."""
        budget = self.config.max_tokens_per_step
        seqs: list[ScheduledSeq] = []
        preempted: list[str] = []
        i = 0
        while i < len(self.running) and budget > 0:
            request = self.running[i]
            remaining = len(request.token_ids) - request.num_computed
            n = min(remaining, self.config.prefill_chunk, budget)
            drafts = self._drafts(request, budget - n) if remaining == 1 else []
            total = request.num_computed + n + len(drafts)
            while not self.kv.allocate(request.request_id, total):
                victim = self.running.pop()  # the newest: never one scheduled before this one
                self._preempt(victim)
                preempted.append(victim.request_id)
                if victim is request:
                    break
            else:
                seqs.append(self._scheduled(request, n, drafts))
                budget -= n + len(drafts)
                i += 1
                continue
            break
        while not preempted and self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            request = self.waiting[0]
            prefix = self.kv.find_prefix(request.token_ids)
            n = min(len(request.token_ids) - prefix.num_tokens, self.config.prefill_chunk, budget)
            if not self.kv.allocate(request.request_id, prefix.num_tokens + n, prefix):
                break
            self.waiting.popleft()
            self.running.append(request)
            request.num_computed = prefix.num_tokens
            if request.num_output == 0:
                request.num_cached_prompt = prefix.num_tokens
            seqs.append(self._scheduled(request, n, []))
            budget -= n
        return SchedulerOutput(seqs, preempted)

    def _drafts(self, request: Request, budget: int) -> list[int]:
        k = self.config.speculative_tokens
        if k == 0 or not request.params.greedy or request.params.repetition_penalty != 1 \
                or request.params.logprobs:
            return []
        room = min(budget, self.max_model_len - len(request.token_ids),
                   request.params.max_tokens - request.num_output - 1)
        return propose_ngram(request.token_ids, self.config.ngram_sizes, min(k, room))

    def _scheduled(self, request: Request, n: int, drafts: list[int]) -> ScheduledSeq:
        start = request.num_computed
        ends = start + n == len(request.token_ids)
        return ScheduledSeq(request.request_id, request.token_ids[start:start + n] + drafts, start,
                            self.kv.block_table(request.request_id), 1 + len(drafts) if ends else 0, drafts)

    def _preempt(self, request: Request) -> None:
        self.kv.free(request.request_id)
        request.num_computed = 0
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(request)

    # ------------------------------------------------------------ results

    def update_from_output(self, output: SchedulerOutput, sampled: Mapping[str, list[int]],
                           logprobs: Mapping[str, list[float]] | None = None) -> list[RequestOutput]:
        """Advance each scheduled sequence by the tokens it computed, append its `sampled` tokens (a token and the
        accepted drafts before it), apply the stop rules and free finished requests."""
        outputs: list[RequestOutput] = []
        for seq in output.seqs:
            request = self.requests.get(seq.request_id)
            if request is None:
                continue
            new = sampled.get(seq.request_id, [])
            request.num_computed += len(seq.token_ids) - len(seq.draft_token_ids) + max(0, len(new) - 1)
            if seq.draft_token_ids:
                self.num_draft_tokens += len(seq.draft_token_ids)
                self.num_accepted_tokens += len(new) - 1
            self.kv.cache_blocks(request.request_id, request.token_ids, request.num_computed)
            if not new:
                continue
            kept: list[int] = []
            for token in new:
                request.token_ids.append(token)
                kept.append(token)
                if self._check_stop(request, token):
                    self._finish(request)
                    break
            probs = logprobs.get(seq.request_id) if logprobs is not None else None
            outputs.append(RequestOutput(
                request.request_id, kept, request.finish_reason is not None, request.finish_reason,
                request.stop_reason, probs[:len(kept)] if probs is not None else None,
                len(request.prompt_token_ids), request.num_cached_prompt,
            ))
        return outputs

    def _check_stop(self, request: Request, token: int) -> bool:
        params = request.params
        if token in params.stop_token_ids or (not params.ignore_eos and token in self.eos_token_ids):
            request.finish_reason, request.stop_reason = "stop", token
        elif params.stop and self.decode is not None and (hit := find_stop_string(
                self.decode, request.output_token_ids, params.stop)) is not None:
            request.finish_reason, request.stop_reason = "stop", hit
        elif request.num_output >= params.max_tokens or len(request.token_ids) >= self.max_model_len:
            request.finish_reason = "length"
        return request.finish_reason is not None

    def _finish(self, request: Request) -> None:
        self.running.remove(request)
        self.requests.pop(request.request_id, None)
        self.kv.free(request.request_id)
