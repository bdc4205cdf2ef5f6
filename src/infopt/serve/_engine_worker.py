"""Continuous batching of generation requests: one `LLMEngine` per served causal LM, on its own thread.

The event loop submits jobs through a thread-safe command queue; the thread loops `step()` while any request
waits or runs, and hands each step's outputs back to the loop (`call_soon_threadsafe`), where every job
detokenizes its new tokens for its stream. Admission is bounded: waiting + running at most `max_queue` (else
429 with Retry-After); a job the engine does not schedule within `timeout_s` is a 504; a cancelled job (client
gone, timeout) is aborted in the engine, which frees its blocks; `drain()` lets the accepted jobs finish, and
after its timeout ends the rest with a 503. Same observable behaviour as `GenerationWorker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import itertools
import logging
import math
import queue
import threading
import time
from typing import Any, Protocol, runtime_checkable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from infopt.compress.quantize._weight_only import Int4WeightOnlyLinear, Int8WeightOnlyLinear
from infopt.errors import NotApplicable
from infopt.serve._batcher import stop_worker
from infopt.serve._config import BatchingConfig
from infopt.serve._engine_config import ServeEngineConfig
from infopt.serve._engine_job import EngineJob
from infopt.serve._errors import QueueFull, RequestError, Unavailable
from infopt.serve._generate import Sampling
from infopt.serve._lm_protocol import job_started, job_text
from infopt.serve.engine import EngineStats, LLMEngine, RequestOutput, SamplingParams
from infopt.serve.engine.model import model_shape

__all__ = ["EngineObserver", "EngineWorker", "engine_worker"]

log = logging.getLogger(__name__)

_SEED_MASK = 0xFFFF_FFFF_FFFF_FFFF
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@runtime_checkable
class EngineObserver(Protocol):
    """What an engine worker reports (e.g. to metrics); every method is called on the event loop."""

    def engine_step(self, model: str, stats: EngineStats, num_seqs: int, num_tokens: int, seconds: float) -> None: ...
    def engine_request(self, model: str, *, queue_s: float | None = None, inter_token_s: float | None = None,
                       e2e_s: float | None = None) -> None: ...


def _check_runnable(model: Any) -> None:
    """NotApplicable unless `model` is a plain Hugging Face Llama (not wrapped; linear layers nn.Linear or
    infopt's weight-only int8 / int4 ones)."""
    model_shape(getattr(model, "config", None))
    if not isinstance(model, PreTrainedModel) or not hasattr(getattr(model, "model", None), "layers"):
        raise NotApplicable(f"The model is a {type(model).__name__}, not a Hugging Face LlamaForCausalLM.",
                            "serve it with the plain generation loop.")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise NotApplicable("The model is not on the CPU; the engine runs on the CPU only.",
                            "serve it with the plain generation loop.")
    odd = {type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__
           and not isinstance(m, torch.nn.Linear | Int8WeightOnlyLinear | Int4WeightOnlyLinear)}
    if odd:
        raise NotApplicable(f"The model has replaced linear layers ({', '.join(sorted(odd))}).",
                            "serve it with the plain generation loop.")


def engine_worker(name: str, model: Any, tokenizer: PreTrainedTokenizerBase, config: ServeEngineConfig,
                  batching: BatchingConfig, max_model_len: int, eos_ids: frozenset[int],
                  observer: Any = None) -> EngineWorker | None:
    """The engine worker of a causal LM, or None (logged) when the engine does not run it. `tokenizer` is
    the event loop's; the engine's thread decodes stop strings with a copy of its own."""
    if not config.enabled:
        log.info("model %r: plain generation loop (engine.enabled is false)", name)
        return None
    try:
        _check_runnable(model)
        shape = model_shape(model.config)
        length = min(config.max_model_len or max_model_len, max_model_len, shape.max_position)
        needed = 2 * config.max_num_seqs * length * shape.kv_bytes_per_token(_DTYPES[config.dtype]) / 2**20
        engine_config = dataclasses.replace(config, max_model_len=length,
                                            kv_cache_mb=min(config.kv_cache_mb, max(needed, 0.01)))
        thread_tokenizer = copy.deepcopy(tokenizer)
        engine = LLMEngine(model, engine_config, eos_token_ids=sorted(eos_ids),
                           decode=lambda ids: str(thread_tokenizer.decode(ids, skip_special_tokens=True)))
    except NotApplicable as e:
        log.info("model %r: plain generation loop (%s)", name, e.problem)
        return None
    except Exception as e:  # an engine that cannot take the model must not stop the server
        log.warning("model %r: plain generation loop (the engine failed to load it: %s: %s)", name,
                    type(e).__name__, e)
        return None
    kv = engine.kv
    log.info("model %r: paged engine (%d KV blocks of %d tokens, %d sequences at once, prefix caching %s)", name,
             kv.num_blocks, kv.block_size, engine_config.max_num_seqs,
             "on" if engine_config.enable_prefix_caching else "off")
    return EngineWorker(engine, tokenizer, batching, name=name,
                        observer=observer if isinstance(observer, EngineObserver) else None)


class EngineWorker:
    """Runs an `LLMEngine` on its own thread for every job of one model, batching them continuously."""

    def __init__(self, engine: LLMEngine, tokenizer: PreTrainedTokenizerBase, config: BatchingConfig | None = None,
                 *, name: str = "model", observer: EngineObserver | None = None) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.config = config or BatchingConfig()
        self.name = name
        self.observer = observer
        self.stats: EngineStats = engine.stats
        """The engine after its last step (published by its thread)."""
        self.peak_running = 0
        """Most sequences one step has run."""
        self._commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._jobs: dict[str, EngineJob] = {}
        self._accepting = True
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle = asyncio.Event()
        self._ids = itertools.count()
        self._mean_s = 0.0  # moving average of one request, for Retry-After

    @property
    def depth(self) -> int:
        """Jobs the engine has not scheduled yet."""
        return sum(1 for job in self._jobs.values() if not job.started.done())

    def start(self) -> None:
        """Start the engine's thread for the running event loop (idempotent)."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name=f"infopt-engine-{self.name}", daemon=True)
            self._thread.start()
            if self.observer is not None:
                self.observer.engine_step(self.name, self.stats, 0, 0, 0.0)

    def retry_after_s(self) -> int:
        waves = 1 + self.depth / max(1, self.engine.config.max_num_seqs)
        return max(1, math.ceil(waves * self._mean_s))

    def submit(self, prompt_ids: list[int], sampling: Sampling) -> EngineJob:
        """Queue a generation; raises Unavailable (draining), QueueFull or RequestError (over the KV pool)."""
        return self.submit_all(prompt_ids, [sampling])[0]

    def submit_all(self, prompt_ids: list[int], samplings: list[Sampling]) -> list[EngineJob]:
        """Queue one engine request per sampling (the choices of one request, run together)."""
        if not self._accepting or self._thread is None:
            raise Unavailable(f"Model {self.name!r} is not taking requests (the server is shutting down).",
                              "retry on another replica or after the restart.", code="draining")
        if len(self._jobs) + len(samplings) > self.config.max_queue:
            raise QueueFull(self.name, self.config.max_queue, self.retry_after_s())
        kv, engine = self.engine.kv, self.engine
        for s in samplings:
            need = kv.blocks_needed(min(len(prompt_ids) + s.max_tokens + engine.config.speculative_tokens,
                                        engine.max_model_len))
            if need > kv.num_blocks:
                raise RequestError(f"The request needs {need} KV-cache blocks; model {self.name!r} has "
                                   f"{kv.num_blocks}.", "lower max_tokens, or raise engine.kv_cache_mb.",
                                   code="context_length_exceeded", param="max_tokens")
        jobs = []
        for s in samplings:
            job = EngineJob(f"{self.name}-{next(self._ids)}", prompt_ids, s, self.tokenizer, self._job_done)
            params = SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p,
                                    seed=None if s.seed is None else s.seed & _SEED_MASK, stop=s.stop,
                                    logprobs=s.logprobs)
            self._jobs[job.request_id] = job
            self._idle.clear()
            self._commands.put(("add", job.request_id, prompt_ids, params))
            jobs.append(job)
        return jobs

    async def wait_started(self, job: EngineJob) -> None:
        """Wait until the engine schedules the job (at most `timeout_s` from its submission); on any failure the
        job is dropped."""
        try:
            await job_started(job, self.name, self.config.timeout_s)
        finally:
            if not job.started.done() or job.started.exception() is not None:
                job.cancel()

    async def text(self, job: EngineJob) -> str:
        """All the text of a started job, within `timeout_s` of its submission (else 504 and the job stops)."""
        return await job_text(job, self.name, self.config.timeout_s)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Stop taking jobs, finish the accepted ones (ending any left after `timeout_s` with a 503), stop."""
        self._accepting = False

        async def idle() -> None:
            while self._jobs:
                await self._idle.wait()

        def abort(gone: Unavailable) -> None:
            for job in list(self._jobs.values()):
                job.fail(gone)

        await stop_worker(self.name, asyncio.get_running_loop().create_task(idle()), None, timeout_s, abort)
        self._commands.put(("stop",))
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    # ------------------------------------------------------------ the event loop's side

    def _job_done(self, job: EngineJob, engine_done: bool) -> None:
        self._jobs.pop(job.request_id, None)
        if not engine_done:
            self._commands.put(("abort", job.request_id))
        elif self.observer is not None:
            self.observer.engine_request(self.name, e2e_s=job.seconds)
        if job.finish_reason in ("stop", "length"):
            seconds = job.seconds
            self._mean_s = seconds if self._mean_s == 0 else 0.8 * self._mean_s + 0.2 * seconds
        if not self._jobs:
            self._idle.set()

    def _on_step(self, outputs: list[RequestOutput], started: list[str], stats: EngineStats, num_seqs: int,
                 num_tokens: int, seconds: float, now: float) -> None:
        observer = self.observer
        for request_id in started:
            job = self._jobs.get(request_id)
            if job is not None and not job.started.done():
                job.mark_started(now)
                if observer is not None:
                    observer.engine_request(self.name, queue_s=now - job.enqueued)
        for out in outputs:
            job = self._jobs.get(out.request_id)
            if job is None:
                continue
            previous = job.last_token_at
            job.on_output(out, now)
            if observer is not None and previous is not None and out.new_token_ids:
                observer.engine_request(self.name, inter_token_s=now - previous)
        self.stats = stats
        self.peak_running = max(self.peak_running, num_seqs)
        if observer is not None:
            observer.engine_step(self.name, stats, num_seqs, num_tokens, seconds)

    def _on_failure(self, error: BaseException, request_ids: list[str]) -> None:
        for request_id in request_ids:
            job = self._jobs.get(request_id)
            if job is not None:
                job.fail(error)

    # ------------------------------------------------------------ the engine's thread

    def _post(self, callback: Any, *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _take(self, block: bool) -> list[tuple[Any, ...]]:
        commands = [self._commands.get()] if block else []
        while True:
            try:
                commands.append(self._commands.get_nowait())
            except queue.Empty:
                return commands

    def _run(self) -> None:
        engine = self.engine
        unstarted: set[str] = set()
        while True:
            commands = self._take(block=not engine.has_unfinished())
            for command in commands:
                kind = command[0]
                if kind == "stop":
                    for request_id in list(engine.scheduler.requests):
                        engine.abort(request_id)
                    return
                if kind == "abort":
                    engine.abort(command[1])
                    unstarted.discard(command[1])
                    continue
                _, request_id, prompt_ids, params = command
                try:
                    engine.add_request(request_id, prompt_ids, params)
                    unstarted.add(request_id)
                except Exception as e:
                    self._post(self._on_failure, e, [request_id])
            if engine.has_unfinished():
                self._step(engine, unstarted)
            elif commands:  # aborts emptied the engine: publish its state (blocks freed)
                self._post(self._on_step, [], [], engine.stats, 0, 0, 0.0, time.perf_counter())

    def _step(self, engine: LLMEngine, unstarted: set[str]) -> None:
        t0 = time.perf_counter()
        try:
            outputs = engine.step()
        except Exception as e:
            log.exception("a step of the engine of model %r failed", self.name)
            ids = list(engine.scheduler.requests)
            for request_id in ids:
                engine.abort(request_id)
            unstarted.clear()
            self._post(self._on_failure, e, ids)
            return
        now = time.perf_counter()
        schedule = engine.last_schedule
        if schedule is None or not schedule.seqs:
            time.sleep(0.001)  # nothing fits now (cannot last: a lone request always fits the pool)
            return
        started: list[str] = []
        if unstarted:
            waiting = {r.request_id for r in engine.scheduler.waiting}
            started = [r for r in unstarted if r not in waiting]
            unstarted.difference_update(started)
        self._post(self._on_step, outputs, started, engine.stats, len(schedule.seqs), schedule.num_tokens,
                   now - t0, now)
