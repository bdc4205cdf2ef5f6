"""What the LM routes need of a generation worker and its jobs: `GenerationWorker` (the plain loop, one at a
time) and `EngineWorker` (the paged engine, continuous batching) both provide it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from infopt.serve._generate import Sampling

__all__ = ["LMJob", "LMWorker"]


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
