"""OpenAI-compatible text generation for causal LMs: `POST /v1/completions` and `POST /v1/chat/completions`,
answered as one JSON body or, with `"stream": true`, as server-sent events (`data: {chunk}` ... `data: [DONE]`).

Queue errors (429, 503, 504 in the queue) come before a stream starts, as plain HTTP errors; an error after the
stream started comes as a last `data: {"error": ...}` event. A client that disconnects stops its generation.

Deterministic requests (temperature 0, or a seed) are looked up in the caches first; a hit is the stored body
(or, streamed, its replay as chunks) and never reaches the model. Complete answers are stored (a stream's
assembled body); errors, cancelled generations and abandoned streams never are.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from infopt.errors import InfoptError
from infopt.serve._caching import CACHE_HEADER, ResponseCache, hit_body
from infopt.serve._errors import ClientClosed, RequestError, WrongTask, error_code
from infopt.serve._generate import Sampling
from infopt.serve._http import error_body, info_of
from infopt.serve._lm_schemas import ChatCompletionRequest, CompletionRequest
from infopt.serve._lm_worker import GenerationWorker, Job
from infopt.serve._served import ServedModel
from infopt.serve._state import ServerState
from infopt.serve.cache import CacheHit, CacheRequest

__all__ = ["DEFAULT_CHAT_TOKENS", "DEFAULT_COMPLETION_TOKENS", "install_lm_routes"]

DEFAULT_COMPLETION_TOKENS = 16
"""`max_tokens` of a completion that does not say (OpenAI's default)."""
DEFAULT_CHAT_TOKENS = 256
"""`max_tokens` of a chat completion that does not say (at most what the context has left)."""

_DISCONNECT_POLL_S = 0.2


def _lm(state: ServerState, request: Request, name: str) -> tuple[ServedModel, GenerationWorker]:
    info_of(request).model = name if state.config.model(name) is not None else "unknown"
    served = state.model(name)
    if served.generator is None:
        raise WrongTask(f"Model {name!r} is a {served.task} model; this endpoint needs a causal-lm model.",
                        "send the request to a causal-lm model (see GET /v1/models).")
    return served, served.generator


def _sampling(served: ServedModel, body: CompletionRequest | ChatCompletionRequest, prompt_ids: list[int],
              budget: int | None, default: int, param: str) -> Sampling:
    """The sampling of a request, after checking n, the prompt and the context."""
    if body.n not in (None, 1):
        raise RequestError(f"n = {body.n} is not supported: this server generates one sequence per request.",
                           "leave out n (or send n = 1), and send several requests for several completions.",
                           code="unsupported_n", param="n")
    if not prompt_ids:
        raise RequestError("The prompt has no tokens.", "send a non-empty prompt.", code="empty_input", param=param)
    context, used = served.max_tokens, len(prompt_ids)
    room = context - used
    max_tokens = budget if budget is not None else min(default, room)
    if max_tokens < 1 or used + max_tokens > context:
        asked = f" and max_tokens is {max_tokens}" if budget is not None else ""
        fix = (f"shorten the prompt, or lower max_tokens to at most {room}." if room > 0
               else f"shorten the prompt to under {context} tokens.")
        raise RequestError(f"The prompt has {used} tokens{asked}; model {served.name!r} takes at most {context} "
                           "tokens of prompt and completion together.", fix, code="context_length_exceeded",
                           param=param)
    temperature = 1.0 if body.temperature is None else body.temperature
    top_p = 1.0 if body.top_p is None else body.top_p
    return Sampling(max_tokens, temperature, top_p, body.seed, body.stops())


@dataclass
class _Shape:
    """The OpenAI bodies of one response: `text_completion` or `chat.completion` (and their chunks)."""

    chat: bool
    model: str
    fingerprint: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex[:24]

    def _head(self, chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": self.fingerprint}

    def body(self, text: str, finish: str, usage: dict[str, int]) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
        choice.update({"message": {"role": "assistant", "content": text}} if self.chat else {"text": text})
        return {**self._head(False), "choices": [choice], "usage": usage}

    def chunk(self, text: str | None, finish: str | None = None, *, first: bool = False) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else {} if text is None else {"content": text}
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        return {**self._head(True), "choices": [choice]}

    def usage_chunk(self, usage: dict[str, int]) -> dict[str, Any]:
        return {**self._head(True), "choices": [], "usage": usage}


def _usage(job: Job) -> dict[str, int]:
    prompt, completion = len(job.prompt_ids), job.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _record(state: ServerState, served: ServedModel, job: Job) -> None:
    state.metrics.generated(served.name, len(job.prompt_ids), job.completion_tokens, job.time_to_first_token_s)


@dataclass
class _Store:
    """Where a generation's complete answer goes: the cache, under `key`, with the time since `start`."""

    cache: ResponseCache
    key: CacheRequest | None
    start: float = field(default_factory=time.perf_counter)

    async def __call__(self, request: Request, body: dict[str, Any]) -> None:
        await self.cache.store(self.key, body, time.perf_counter() - self.start, request)


async def _stream(state: ServerState, served: ServedModel, request: Request, job: Job, shape: _Shape,
                  include_usage: bool, store: _Store) -> AsyncIterator[str]:
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    try:
        if shape.chat:
            yield _sse({**shape.chunk(None, first=True), **extra})
        parts = []
        async for text in job.deltas():
            parts.append(text)
            yield _sse({**shape.chunk(text), **extra})
            if await request.is_disconnected():
                return
        yield _sse({**shape.chunk(None, job.finish_reason), **extra})
        if include_usage:
            yield _sse(shape.usage_chunk(_usage(job)))
        if job.finish_reason != "cancelled":
            await store(request, shape.body("".join(parts), job.finish_reason, _usage(job)))
    except InfoptError as e:
        yield _sse(error_body(e.http_status, str(e), error_code(e)))
    except Exception:  # logged by the worker; no details to the client
        yield _sse(error_body(500, "Internal server error.", "internal_error"))
    finally:
        job.cancel()
        _record(state, served, job)
    yield "data: [DONE]\n\n"


async def _watch_disconnect(request: Request, job: Job) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(_DISCONNECT_POLL_S)
    job.cancel()


async def _replay(hit: dict[str, Any], chat: bool, include_usage: bool) -> AsyncIterator[str]:
    """A cached body as the chunks a stream of it would have sent (the text in one chunk)."""
    shape = _Shape(chat, hit["model"], hit.get("system_fingerprint", ""))
    shape.id, shape.created = hit["id"], hit["created"]
    choice = hit["choices"][0]
    text = choice["message"]["content"] if chat else choice["text"]
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    first = {**extra, "infopt": hit["infopt"]}
    if chat:
        yield _sse({**shape.chunk(None, first=True), **first})
        first = extra
    if text:
        yield _sse({**shape.chunk(text), **first})
        first = extra
    yield _sse({**shape.chunk(None, choice["finish_reason"]), **first})
    if include_usage:
        yield _sse(shape.usage_chunk(hit["usage"]))
    yield "data: [DONE]\n\n"


def _hit_response(hit: CacheHit, body: CompletionRequest | ChatCompletionRequest, chat: bool) -> Response:
    out = hit_body(hit)
    headers = {CACHE_HEADER: hit.tier}
    if body.stream:
        return StreamingResponse(_replay(out, chat, body.include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", **headers})
    return JSONResponse(out, headers=headers)


async def _answer(state: ServerState, request: Request, served: ServedModel, worker: GenerationWorker,
                  body: CompletionRequest | ChatCompletionRequest, prompt_ids: list[int], sampling: Sampling,
                  chat: bool, cache: ResponseCache) -> Response:
    endpoint = "/v1/chat/completions" if chat else "/v1/completions"
    key = await cache.request(request, endpoint, body, served)
    hit = await cache.lookup(key)
    if hit is not None:
        return _hit_response(hit, body, chat)
    store = _Store(cache, key)
    job = worker.submit(prompt_ids, sampling)
    watcher = asyncio.create_task(_watch_disconnect(request, job))  # a client gone stops its job, queued or not
    try:
        await worker.wait_started(job)
        shape = _Shape(chat, body.model, served.loaded.manifest.fingerprint)
        if body.stream:  # from here on, a disconnect ends the stream (Starlette) and the stream ends the job
            return StreamingResponse(_stream(state, served, request, job, shape, body.include_usage, store),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        try:
            text = await worker.text(job)
        finally:
            _record(state, served, job)
    finally:
        watcher.cancel()
    if job.finish_reason == "cancelled":
        raise ClientClosed
    out = shape.body(text, job.finish_reason, _usage(job))
    await store(request, out)
    return JSONResponse(out)


def install_lm_routes(app: FastAPI, state: ServerState, cache: ResponseCache) -> None:
    """Add the completions and chat completions endpoints to `app`, behind `cache`."""

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        served, worker = _lm(state, request, body.model)
        ids = served.prompt_ids(body.text())
        sampling = _sampling(served, body, ids, body.max_tokens, DEFAULT_COMPLETION_TOKENS, "prompt")
        return await _answer(state, request, served, worker, body, ids, sampling, chat=False, cache=cache)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        served, worker = _lm(state, request, body.model)
        ids = served.chat_ids([m.for_template() for m in body.messages])
        sampling = _sampling(served, body, ids, body.token_budget(), DEFAULT_CHAT_TOKENS, "messages")
        return await _answer(state, request, served, worker, body, ids, sampling, chat=True, cache=cache)
