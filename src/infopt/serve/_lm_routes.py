"""OpenAI-compatible text generation for causal LMs: `POST /v1/completions` and `POST /v1/chat/completions`,
answered as one JSON body or, with `"stream": true`, as server-sent events (`data: {chunk}` ... `data: [DONE]`).

Queue errors (429, 503, 504 in the queue) come before a stream starts, as plain HTTP errors; an error after the
stream started comes as a last `data: {"error": ...}` event. A client that disconnects stops its generation.
`n` choices run as n generations (together on the paged engine), their chunks interleaved in one stream.

Deterministic requests (temperature 0, or a seed) are looked up in the caches first, before the chat template
or the tokenizer runs (the key is the request body); a hit is the stored body
(or, streamed, its replay as chunks) and never reaches the model. Complete answers are stored (a stream's
assembled body); errors, cancelled generations and abandoned streams never are. Requests for logprobs skip the
caches (their keys do not hold the field).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Scope

from infopt.errors import InfoptError
from infopt.serve._caching import CACHE_HEADER, ResponseCache, hit_body
from infopt.serve._errors import ClientClosed, RequestError, WrongTask, error_code
from infopt.serve._generate import Sampling
from infopt.serve._http import HitPath, error_body, info_of
from infopt.serve._lm_protocol import LMJob, LMWorker
from infopt.serve._lm_schemas import ChatCompletionRequest, CompletionRequest
from infopt.serve._lm_shapes import Logprobs, Shape, replay, sse
from infopt.serve._served import ServedModel
from infopt.serve._state import ServerState
from infopt.serve.cache import CacheHit, CacheRequest

__all__ = ["DEFAULT_CHAT_TOKENS", "DEFAULT_COMPLETION_TOKENS", "install_lm_routes", "lm_hit_path"]

DEFAULT_COMPLETION_TOKENS = 16
"""`max_tokens` of a completion that does not say (OpenAI's default)."""
DEFAULT_CHAT_TOKENS = 256
"""`max_tokens` of a chat completion that does not say (at most what the context has left)."""

_DISCONNECT_POLL_S = 0.2


Prepare = Callable[[], tuple[list[int], list[Sampling]]]
"""Builds a request's prompt ids and one sampling per choice (after a cache miss only)."""


def _lm(state: ServerState, request: Request, name: str) -> tuple[ServedModel, LMWorker]:
    info_of(request).model = name if state.config.model(name) is not None else "unknown"
    served = state.model(name)
    if served.generator is None:
        raise WrongTask(f"Model {name!r} is a {served.task} model; this endpoint needs a causal-lm model.",
                        "send the request to a causal-lm model (see GET /v1/models).")
    return served, served.generator


def _sampling(served: ServedModel, body: CompletionRequest | ChatCompletionRequest, prompt_ids: list[int],
              budget: int | None, default: int, param: str) -> Sampling:
    """The sampling of a request (of its first choice), after checking the prompt and the context."""
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
    return Sampling(max_tokens, temperature, top_p, body.seed, body.stops(), body.wants_logprobs)


def _choices(served: ServedModel, body: CompletionRequest | ChatCompletionRequest,
             sampling: Sampling) -> list[Sampling]:
    """One sampling per choice (`n`); with a seed, choice i samples with seed + i."""
    if sampling.logprobs and served.engine != "paged":
        raise RequestError(f"Model {served.name!r} runs on the plain generation loop, which gives no logprobs.",
                           "leave out logprobs.", code="unsupported_logprobs", param="logprobs")
    seed = sampling.seed
    return [sampling if seed is None else dataclasses.replace(sampling, seed=seed + i) for i in range(body.n or 1)]


def _usage(served: ServedModel, jobs: Sequence[LMJob]) -> dict[str, Any]:
    """The prompt once, the completions of all choices; on the engine, the prompt tokens its prefix cache had."""
    prompt, completion = len(jobs[0].prompt_ids), sum(j.completion_tokens for j in jobs)
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}
    if served.engine == "paged":
        usage["prompt_tokens_details"] = {"cached_tokens": jobs[0].cached_tokens}
    return usage


def _record(state: ServerState, served: ServedModel, jobs: Sequence[LMJob]) -> None:
    for i, job in enumerate(jobs):
        state.metrics.generated(served.name, len(job.prompt_ids) if i == 0 else 0, job.completion_tokens,
                                job.time_to_first_token_s)


@dataclass
class _Store:
    """Where a generation's complete answer goes: the cache, under `key`, with the time since `start`."""

    cache: ResponseCache
    key: CacheRequest | None
    start: float = field(default_factory=time.perf_counter)

    async def __call__(self, request: Request, body: dict[str, Any]) -> None:
        await self.cache.store(self.key, body, time.perf_counter() - self.start, request)


async def _pump(worker: LMWorker, job: LMJob, index: int,
                out: asyncio.Queue[tuple[int, str | BaseException | None]]) -> None:
    """One choice's text into the stream's queue: (index, text) pieces, then (index, None), or the error."""
    try:
        await worker.wait_started(job)
        async for text in job.deltas():
            out.put_nowait((index, text))
        out.put_nowait((index, None))
    except Exception as e:
        out.put_nowait((index, e))


class _Choices:
    """The choices of one response as they arrive: text, finish reasons, and logprobs (when asked)."""

    def __init__(self, jobs: Sequence[LMJob], shape: Shape, logprobs: bool) -> None:
        self.jobs = jobs
        self.shape = shape
        self.texts: list[list[str]] = [[] for _ in jobs]
        self.logprobs = [Logprobs(shape.chat) for _ in jobs] if logprobs else None

    def take(self, index: int) -> dict[str, Any] | None:
        """The logprobs of the tokens choice `index` got since the last take (None when not asked)."""
        return None if self.logprobs is None else self.logprobs[index].piece(self.jobs[index].take_logprobs())

    def bodies(self, texts: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every choice of the whole response."""
        texts = texts if texts is not None else ["".join(t) for t in self.texts]
        return [self.shape.choice(i, text, job.finish_reason, self.take(i))
                for i, (text, job) in enumerate(zip(texts, self.jobs, strict=True))]


async def _stream(state: ServerState, served: ServedModel, request: Request, worker: LMWorker,
                  jobs: Sequence[LMJob], shape: Shape, include_usage: bool, logprobs: bool,
                  store: _Store) -> AsyncIterator[str]:
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    choices = _Choices(jobs, shape, logprobs)
    pieces: asyncio.Queue[tuple[int, str | BaseException | None]] = asyncio.Queue()
    pumps = [asyncio.create_task(_pump(worker, job, i, pieces)) for i, job in enumerate(jobs)]
    try:
        if shape.chat:
            for i in range(len(jobs)):
                yield sse({**shape.chunk(None, first=True, index=i), **extra})
        left = len(jobs)
        while left:
            i, item = await pieces.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                left -= 1
                yield sse({**shape.chunk(None, jobs[i].finish_reason, index=i, logprobs=choices.take(i)), **extra})
                continue
            choices.texts[i].append(item)
            yield sse({**shape.chunk(item, index=i, logprobs=choices.take(i)), **extra})
            if await request.is_disconnected():
                return
        if include_usage:
            yield sse(shape.usage_chunk(_usage(served, jobs)))
        if all(job.finish_reason != "cancelled" for job in jobs):
            await store(request, shape.body(choices.bodies(), _usage(served, jobs)))
    except InfoptError as e:
        yield sse(error_body(e.http_status, str(e), error_code(e)))
    except Exception:  # logged by the worker; no details to the client
        yield sse(error_body(500, "Internal server error.", "internal_error"))
    finally:
        for pump in pumps:
            pump.cancel()
        for job in jobs:
            job.cancel()
        _record(state, served, jobs)
    yield "data: [DONE]\n\n"


async def _texts(worker: LMWorker, jobs: Sequence[LMJob]) -> list[str]:
    """The whole text of every choice (the first error is raised; the other jobs stop)."""
    async def one(job: LMJob) -> str:
        await worker.wait_started(job)
        return await worker.text(job)

    try:
        results = await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)
    finally:
        for job in jobs:
            job.cancel()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [str(r) for r in results]


async def _watch_disconnect(request: Request, jobs: Sequence[LMJob]) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(_DISCONNECT_POLL_S)
    for job in jobs:
        job.cancel()


def _hit_response(hit: CacheHit, body: CompletionRequest | ChatCompletionRequest, chat: bool) -> Response:
    out = hit_body(hit)
    headers = {CACHE_HEADER: hit.tier}
    if body.stream:
        return StreamingResponse(replay(out, chat, body.include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", **headers})
    return JSONResponse(out, headers=headers)


async def _answer(state: ServerState, request: Request, served: ServedModel, worker: LMWorker,
                  body: CompletionRequest | ChatCompletionRequest, prepare: Prepare, chat: bool,
                  cache: ResponseCache) -> Response:
    """Look the request up first (its key is the body, so a hit costs no template or tokenizer work), then
    `prepare` the prompt and samplings and generate."""
    endpoint = "/v1/chat/completions" if chat else "/v1/completions"
    logprobs = body.wants_logprobs
    info = info_of(request)
    if info.looked_up:  # the hit path asked the caches before routing, and missed
        key = info.cache_key
    else:
        key = None if logprobs else await cache.request(request, endpoint, body, served)
        hit = await cache.lookup(key)
        if hit is not None:
            return _hit_response(hit, body, chat)
    prompt_ids, samplings = prepare()
    store = _Store(cache, key)
    jobs = worker.submit_all(prompt_ids, samplings)
    watcher = asyncio.create_task(_watch_disconnect(request, jobs))  # a client gone stops its jobs, queued or not
    try:
        try:
            await worker.wait_started(jobs[0])
        except BaseException:
            for job in jobs:
                job.cancel()
            raise
        shape = Shape(chat, body.model, served.loaded.manifest.fingerprint)
        if body.stream:  # from here on, a disconnect ends the stream (Starlette) and the stream ends the jobs
            return StreamingResponse(_stream(state, served, request, worker, jobs, shape, body.include_usage,
                                             logprobs, store),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        try:
            texts = await _texts(worker, jobs)
        finally:
            _record(state, served, jobs)
    finally:
        watcher.cancel()
    if any(job.finish_reason == "cancelled" for job in jobs):
        raise ClientClosed
    out = shape.body(_Choices(jobs, shape, logprobs).bodies(texts), _usage(served, jobs))
    await store(request, out)
    return JSONResponse(out)


def lm_hit_path(state: ServerState, cache: ResponseCache) -> HitPath:
    """The `HitPath` of completions and chat: a request that validates, for a causal LM that is ready, is looked
    up as its route would look it up; a hit is answered at once (no routing, no second validation), a miss goes
    on to the route (which does not look again). Anything else (bad body, unknown model, logprobs) is left to
    the route and its errors."""
    schemas: dict[str, type[CompletionRequest] | type[ChatCompletionRequest]] = {
        "/v1/completions": CompletionRequest, "/v1/chat/completions": ChatCompletionRequest}

    async def answer(scope: Scope, raw: bytes) -> ASGIApp | None:
        schema = schemas.get(scope.get("path", ""))
        if schema is None or scope.get("method") != "POST" or not cache.enabled:
            return None
        try:
            body = schema.model_validate_json(raw)
            request = Request(scope)
            served, _ = _lm(state, request, body.model)
        except (ValidationError, InfoptError):
            return None
        if body.wants_logprobs:
            return None
        key = await cache.request(request, scope["path"], body, served)
        hit = await cache.lookup(key)
        if hit is not None:
            return _hit_response(hit, body, schema is ChatCompletionRequest)
        info = info_of(request)
        info.cache_key, info.looked_up = key, True
        return None

    return answer


def install_lm_routes(app: FastAPI, state: ServerState, cache: ResponseCache) -> None:
    """Add the completions and chat completions endpoints to `app`, behind `cache`."""

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        served, worker = _lm(state, request, body.model)

        def prepare() -> tuple[list[int], list[Sampling]]:
            ids = served.prompt_ids(body.text())
            sampling = _sampling(served, body, ids, body.max_tokens, DEFAULT_COMPLETION_TOKENS, "prompt")
            return ids, _choices(served, body, sampling)

        return await _answer(state, request, served, worker, body, prepare, chat=False, cache=cache)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        served, worker = _lm(state, request, body.model)

        def prepare() -> tuple[list[int], list[Sampling]]:
            ids = served.chat_ids([m.for_template() for m in body.messages])
            sampling = _sampling(served, body, ids, body.token_budget(), DEFAULT_CHAT_TOKENS, "messages")
            return ids, _choices(served, body, sampling)

        return await _answer(state, request, served, worker, body, prepare, chat=True, cache=cache)
