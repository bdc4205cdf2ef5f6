"""One choice of a generation request on the paged engine, as the routes see it (the API of `_lm_worker.Job`).

Everything here runs on the event loop: the engine's thread hands each step's `RequestOutput` to `on_output`,
which detokenizes the new tokens (holding back a tail that may begin a stop string) and feeds `deltas()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from transformers import PreTrainedTokenizerBase

from infopt.serve._errors import ClientClosed
from infopt.serve._generate import Detokenizer, Sampling
from infopt.serve._lm_worker import _END, _End, read_deltas
from infopt.serve.engine import RequestOutput

__all__ = ["EngineJob"]


class EngineJob:
    """One engine request: its text stream, token counts and timings. `on_done(job, engine_done)` tells the
    worker it ended (`engine_done` False: the engine still holds it and must abort it)."""

    def __init__(self, request_id: str, prompt_ids: list[int], sampling: Sampling,
                 tokenizer: PreTrainedTokenizerBase, on_done: Callable[[EngineJob, bool], None]) -> None:
        self.request_id = request_id
        self.prompt_ids = prompt_ids
        self.sampling = sampling
        self.loop = asyncio.get_running_loop()
        self.enqueued = time.perf_counter()
        self.started: asyncio.Future[None] = self.loop.create_future()
        self.started_at: float | None = None
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.finish_reason = ""
        self.done = False
        self._tokenizer = tokenizer
        self._detok = Detokenizer(tokenizer, sampling.stop)
        self._on_done = on_done
        self._events: asyncio.Queue[str | _End | BaseException] = asyncio.Queue()
        self._logprobs: list[tuple[str, float]] = []
        self._taken = 0

    @property
    def time_to_first_token_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.enqueued

    @property
    def seconds(self) -> float:
        """From submission to the last token (or now)."""
        return (self.last_token_at or time.perf_counter()) - self.enqueued

    # ------------------------------------------------------------ from the engine's thread (via the loop)

    def mark_started(self, now: float) -> None:
        """The engine scheduled the request (its first prefill chunk ran)."""
        if not self.started.done():
            self.started_at = now
            self.started.set_result(None)

    def on_output(self, out: RequestOutput, now: float) -> None:
        """A step's new tokens: count them, detokenize them, apply the stop strings, end on the last one."""
        if self.done:
            return
        self.mark_started(now)
        self.cached_tokens = out.num_cached_tokens
        new = out.new_token_ids
        if new:
            self.first_token_at = self.first_token_at or now
            self.last_token_at = now
        text_ids = new[:-1] if out.finished and isinstance(out.stop_reason, int) else new  # an end token: no text
        parts: list[str] = []
        stopped = False
        for i, token in enumerate(new):
            self.completion_tokens += 1
            if out.new_logprobs is not None and i < len(out.new_logprobs):
                self._logprobs.append((str(self._tokenizer.decode([token])), out.new_logprobs[i]))
            if i < len(text_ids):
                parts.append(self._detok.add(token))
                if self._detok.stopped:
                    stopped = True
                    break
        if out.finished or stopped:
            parts.append(self._detok.flush())
        text = "".join(parts)
        if text:
            self._events.put_nowait(text)
        if out.finished or stopped:
            self._end("stop" if stopped else out.finish_reason or "length", engine_done=out.finished)

    def fail(self, error: BaseException) -> None:
        """End the job with `error`, raised by `deltas()` or by waiting for the start."""
        if self.done:
            return
        if not self.started.done():
            self.started.set_exception(error)
            self.started.exception()  # retrieved: no warning if nobody waits any more
        self._events.put_nowait(error)
        self._end("error", engine_done=False)

    # ------------------------------------------------------------ the routes

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop the job (the engine aborts it and frees its blocks); waiting for a start that never came raises
        `error` (by default ClientClosed). A finished job stays as it is."""
        if not self.started.done():
            self.started.set_exception(error or ClientClosed())
            self.started.exception()
        if not self.done:
            self._end("cancelled", engine_done=False)

    def deltas(self) -> AsyncIterator[str]:
        """The generated text in pieces: whatever arrived since the last piece."""
        return read_deltas(self._events)

    def take_logprobs(self) -> list[tuple[str, float]]:
        """(token text, logprob) of the tokens that arrived since the last call (when the sampling asked)."""
        out = self._logprobs[self._taken:]
        self._taken = len(self._logprobs)
        return out

    def _end(self, reason: str, *, engine_done: bool) -> None:
        self.done = True
        self.finish_reason = reason
        self._events.put_nowait(_END)
        self._on_done(self, engine_done)
