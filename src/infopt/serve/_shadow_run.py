"""Shadow verification on the model path: a semantic hit chosen for checking (`verify`) is answered from the
cache at once, and the same request also runs on the model in the background; the semantic tier is told whether
the two answers agree (`record(agree)`), so that its verifier can tighten the threshold or disable hits.

At most `max_in_flight` shadow runs go at a time; a check asked for while that many run is dropped (counted).
A shadow run's answer is never stored nor sent; a run that fails (queue full, model error) is not a sample.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from infopt.serve._served import ServedModel
from infopt.serve.cache import CacheHit, CacheRequest
from infopt.serve.cache._semantic_keys import answers_agree

__all__ = ["Rerun", "ShadowRuns", "generation_rerun"]

log = logging.getLogger("infopt.serve.cache.shadow")

Rerun = Callable[[], Awaitable[dict[str, Any]]]
"""Runs the request on the model again: its fresh response body."""


def generation_rerun(served: ServedModel, body: BaseModel) -> Rerun | None:
    """A rerun of a completion / chat request on its causal LM (None: not one)."""
    from infopt.serve._lm_routes import DEFAULT_CHAT_TOKENS, DEFAULT_COMPLETION_TOKENS, _sampling
    from infopt.serve._lm_schemas import ChatCompletionRequest, CompletionRequest

    worker = served.generator
    if worker is None or not isinstance(body, ChatCompletionRequest | CompletionRequest):
        return None

    async def rerun() -> dict[str, Any]:
        if isinstance(body, ChatCompletionRequest):
            ids = served.chat_ids([m.for_template() for m in body.messages])
            sampling = _sampling(served, body, ids, body.token_budget(), DEFAULT_CHAT_TOKENS, "messages")
        else:
            ids = served.prompt_ids(body.text())
            sampling = _sampling(served, body, ids, body.max_tokens, DEFAULT_COMPLETION_TOKENS, "prompt")
        job = worker.submit(ids, sampling)
        try:
            await worker.wait_started(job)
            text = await worker.text(job)
        finally:
            job.cancel()
        choice = {"message": {"role": "assistant", "content": text}} if isinstance(body, ChatCompletionRequest) \
            else {"text": text}
        return {"choices": [choice]}

    return rerun


class ShadowRuns:
    """Bounded background shadow runs of semantic hits; `counts` for the stats."""

    def __init__(self, max_in_flight: int = 2) -> None:
        self.max_in_flight = max_in_flight
        self.counts = {"started": 0, "dropped": 0, "failed": 0, "agreed": 0, "disagreed": 0}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def schedule(self, semantic: Any, key: CacheRequest, hit: CacheHit, rerun: Rerun | None) -> bool:
        """Start a shadow run of `key` (the answer `hit` gave); False when dropped (too many, or no rerun)."""
        record = getattr(semantic, "record", None)
        if rerun is None or not callable(record) or len(self._tasks) >= self.max_in_flight:
            self.counts["dropped"] += 1
            return False
        self.counts["started"] += 1
        task = asyncio.get_running_loop().create_task(self._run(record, key.endpoint, hit, rerun))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, record: Callable[[bool], None], endpoint: str, hit: CacheHit, rerun: Rerun) -> None:
        try:
            fresh = await rerun()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.counts["failed"] += 1
            log.debug("shadow run of semantic hit %s failed: %s", hit.key, e)
            return
        agree = answers_agree(endpoint, hit.response, fresh)
        self.counts["agreed" if agree else "disagreed"] += 1
        if not agree:
            log.info("semantic cache: shadow check of entry %s disagrees with the model", hit.key)
        try:
            await asyncio.to_thread(record, agree)
        except Exception:
            log.exception("semantic cache: recording a shadow check failed")

    async def close(self) -> None:
        """Cancel the runs in flight and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
