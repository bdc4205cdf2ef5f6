"""One generation at a time per model: a bounded queue and one worker thread, with the batcher's behaviour.

A full queue raises `QueueFull` (429, with Retry-After from the mean generation time), a job not started within
`timeout_s` raises `QueueTimeout` (504), and after `drain()` new jobs raise `Unavailable` (503); the accepted ones
finish, and any left after the drain's timeout are stopped at their next token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from infopt.serve._batcher import BatchObserver, stop_worker
from infopt.serve._config import BatchingConfig
from infopt.serve._errors import ClientClosed, QueueFull, Unavailable
from infopt.serve._generate import Sampling
from infopt.serve._lm_protocol import job_started, job_text

__all__ = ["GenerationWorker", "Job", "read_deltas"]

log = logging.getLogger(__name__)


class _End:
    pass


_END = _End()


class Job:
    """One generation request. The model's thread reports through `token`, `emit` and `finish` (it is a
    `GenerationSink`); the event loop reads the text with `deltas()` and stops the job with `cancel()`."""

    def __init__(self, prompt_ids: list[int], sampling: Sampling) -> None:
        self.prompt_ids = prompt_ids
        self.sampling = sampling
        self.loop = asyncio.get_running_loop()
        self.enqueued = time.perf_counter()
        self.started: asyncio.Future[None] = self.loop.create_future()
        self.completion_tokens = 0
        self.first_token_at: float | None = None
        self.finish_reason = ""
        self.cached_tokens = 0
        """Prompt tokens found in a prefix cache (the plain loop has none)."""
        self._events: asyncio.Queue[str | _End | BaseException] = asyncio.Queue()
        self._stop = threading.Event()

    # ------------------------------------------------------------ the model's thread

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.completion_tokens += 1

    def emit(self, text: str) -> None:
        self.loop.call_soon_threadsafe(self._events.put_nowait, text)

    def finish(self, reason: str) -> None:
        self.finish_reason = reason
        self.loop.call_soon_threadsafe(self._events.put_nowait, _END)

    def fail(self, error: BaseException) -> None:
        self.loop.call_soon_threadsafe(self.abort, error)

    # ------------------------------------------------------------ the event loop

    @property
    def time_to_first_token_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.enqueued

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop the generation at its next token; a job not started yet is skipped, and waiting for its start
        raises `error` (by default ClientClosed)."""
        self._stop.set()
        if not self.started.done():
            self.started.set_exception(error or ClientClosed())
            self.started.exception()  # retrieved: no "never retrieved" warning if nobody waits any more

    def abort(self, error: BaseException) -> None:
        """End the job with `error`, raised by `deltas()` or by waiting for the start."""
        if self.started.done():
            self._events.put_nowait(error)
        self.cancel(error)

    def deltas(self) -> AsyncIterator[str]:
        """The generated text in pieces: whatever arrived since the last piece (at least one token's worth)."""
        return read_deltas(self._events)

    def take_logprobs(self) -> list[tuple[str, float]]:
        """The plain loop gives no logprobs (the engine's jobs do)."""
        return []


async def read_deltas(events: asyncio.Queue[str | _End | BaseException]) -> AsyncIterator[str]:
    """The text of a job's event queue in pieces: whatever arrived since the last piece; an error is raised."""
    while True:
        parts: list[str] = []
        item = await events.get()
        while True:
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, _End):
                if parts:
                    yield "".join(parts)
                return
            parts.append(item)
            if events.empty():
                break
            item = events.get_nowait()
        yield "".join(parts)


class GenerationWorker:
    """Runs `run(job)` on its own thread for one job at a time, first come first served."""

    def __init__(self, run: Callable[[Job], None], config: BatchingConfig | None = None, *, name: str = "model",
                 observer: BatchObserver | None = None) -> None:
        self.run = run
        self.config = config or BatchingConfig()
        self.name = name
        self.observer = observer
        self._pending: deque[Job] = deque()
        self._running: Job | None = None
        self._accepting = True
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infopt-generate-{name}")
        self._mean_s = 0.0  # moving average of one generation, for Retry-After

    @property
    def depth(self) -> int:
        """Jobs waiting (not counting the one running)."""
        return len(self._pending)

    def _depth_changed(self) -> None:
        if self.observer is not None:
            self.observer.queue_depth(self.name, len(self._pending))

    def start(self) -> None:
        """Start the worker on the running event loop (idempotent)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._work(), name=f"generate-{self.name}")

    def retry_after_s(self) -> int:
        return max(1, math.ceil((len(self._pending) + 1) * self._mean_s))

    def submit(self, prompt_ids: list[int], sampling: Sampling) -> Job:
        """Queue a generation; raises Unavailable (draining) or QueueFull."""
        return self.submit_all(prompt_ids, [sampling])[0]

    def submit_all(self, prompt_ids: list[int], samplings: list[Sampling]) -> list[Job]:
        """Queue one generation per sampling (the choices of one request, run one after the other); raises
        Unavailable (draining) or QueueFull (when they do not all fit)."""
        if not self._accepting or self._task is None:
            raise Unavailable(f"Model {self.name!r} is not taking requests (the server is shutting down).",
                              "retry on another replica or after the restart.", code="draining")
        if len(self._pending) + len(samplings) > self.config.max_queue:
            raise QueueFull(self.name, self.config.max_queue, self.retry_after_s())
        jobs = [Job(prompt_ids, sampling) for sampling in samplings]
        self._pending.extend(jobs)
        self._depth_changed()
        assert self._wake is not None
        self._wake.set()
        return jobs

    async def wait_started(self, job: Job) -> None:
        """Wait until the job runs (at most `timeout_s` from its submission); on any failure the job is dropped."""
        try:
            await job_started(job, self.name, self.config.timeout_s)
        finally:
            if not job.started.done() or job.cancelled:  # timed out, or failed, or the client went away
                job.cancel()
                if job in self._pending:
                    self._pending.remove(job)
                    self._depth_changed()

    async def text(self, job: Job) -> str:
        """All the text of a started job, within `timeout_s` of its submission (else 504 and the job stops)."""
        return await job_text(job, self.name, self.config.timeout_s)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Stop taking jobs, finish the accepted ones (stopping any left after `timeout_s`), stop the worker."""
        self._accepting = False

        def abort(gone: Unavailable) -> None:
            for job in [*([self._running] if self._running else []), *self._pending]:
                job.abort(gone)
            self._pending.clear()

        await stop_worker(self.name, self._task, self._wake, timeout_s, abort)
        self._executor.shutdown(wait=False)

    def _call(self, job: Job) -> None:
        """On the worker thread: run the job; an error ends the job instead of the worker."""
        try:
            self.run(job)
        except Exception as e:
            log.exception("generation of model %r failed", self.name)
            job.fail(e)

    async def _work(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if not self._accepting:
                    return
                self._wake.clear()
                await self._wake.wait()
            job = self._pending.popleft()
            self._depth_changed()
            if job.started.done() or job.cancelled:
                continue
            job.started.set_result(None)
            start = time.perf_counter()
            if self.observer is not None:
                self.observer.queue_wait(self.name, start - job.enqueued)
            self._running = job
            try:
                await loop.run_in_executor(self._executor, self._call, job)
            finally:
                self._running = None
            seconds = time.perf_counter() - start
            self._mean_s = seconds if self._mean_s == 0 else 0.8 * self._mean_s + 0.2 * seconds
            if self.observer is not None:
                self.observer.batch(self.name, 1, seconds)
