"""What the LM routes need of a generation worker and its jobs: `GenerationWorker` (the plain loop, one at a
time) and `EngineWorker` (the paged engine, continuous batching) both provide it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from infopt.serve._errors import QueueTimeout
from infopt.serve._generate import Sampling

__all__ = ["LMJob", "LMWorker", "generation_timeout", "job_started", "job_text"]


class LMJob(Protocol):
    """One generation (one choice): counts, the finish reason and the text stream."""

    prompt_ids: list[int]
    completion_tokens: int
    cached_tokens: int
    finish_reason: str

    @property
    def time_to_first_token_s(self) -> float | None: ...
    def cancel(self, error: BaseException | None = None) -> None: ...
    def deltas(self) -> AsyncIterator[str]: ...
    def take_logprobs(self) -> list[tuple[str, float]]: ...


class LMWorker(Protocol):
    """Queues generations of one model and runs them."""

    @property
    def depth(self) -> int: ...
    def start(self) -> None: ...
    async def drain(self, timeout_s: float | None = None) -> None: ...
    def submit(self, prompt_ids: list[int], sampling: Sampling) -> Any: ...
    def submit_all(self, prompt_ids: list[int], samplings: list[Sampling]) -> Sequence[LMJob]: ...
    async def wait_started(self, job: Any) -> None: ...
    async def text(self, job: Any) -> str: ...


def generation_timeout(model: str, what: str) -> QueueTimeout:
    """The 504 of a generation of `model` that `what` (waited too long, took too long)."""
    return QueueTimeout(f"The request to model {model!r} {what}.", "retry later, ask for fewer tokens "
                        "(max_tokens), stream the response, or raise batching.timeout_s.")


async def job_started(job: Any, model: str, timeout_s: float) -> None:
    """Wait for `job.started` within `timeout_s` of its submission (`job.enqueued`), else 504."""
    left = timeout_s - (time.perf_counter() - job.enqueued)
    try:
        await asyncio.wait_for(asyncio.shield(job.started), max(left, 0.0))
    except TimeoutError:
        raise generation_timeout(model, f"waited more than {timeout_s:g} s in the queue") from None


async def job_text(job: Any, model: str, timeout_s: float) -> str:
    """All the text of a started job, within `timeout_s` of its submission (`job.enqueued`), else 504 (the job
    stops either way)."""
    async def collect() -> str:
        return "".join([d async for d in job.deltas()])

    left = timeout_s - (time.perf_counter() - job.enqueued)
    try:
        return await asyncio.wait_for(collect(), max(left, 0.0))
    except TimeoutError:
        raise generation_timeout(model, f"took more than {timeout_s:g} s ({job.completion_tokens} tokens "
                                 "generated)") from None
    finally:
        job.cancel()
