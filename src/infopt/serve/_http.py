"""The thin HTTP plumbing: OpenAI-style error bodies, exception handlers, and one ASGI middleware that checks the
API key (`[auth]`, before anything else), caps the body size, times every request for the metrics (and for the
client: a `Server-Timing: app;dur=MS` header, the milliseconds from the app taking the request to its answer's
first byte) and turns any crash into a bare 500.

Request and response texts stay out of the logs unless `log_bodies` is on: a crash is logged with its method,
path, exception types and traceback frames, never an exception's message (which may quote the input); the
`BodyRedactor` filter does the same for every other `infopt.serve` / `infopt.monitor` logger (see `guard_logs`)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infopt.errors import InfoptError
from infopt.serve._auth import Authenticator, refusal_headers
from infopt.serve._errors import AuthRefused, QueueFull, error_code
from infopt.serve._metrics import Metrics

__all__ = ["ENDPOINTS", "Admission", "BodyRedactor", "RequestInfo", "ServeMiddleware", "Shed", "Turnstile",
           "error_body", "guard_logs", "install_handlers", "withheld"]

log = logging.getLogger(__name__)

ENDPOINTS = ("/v1/classify", "/v1/embeddings", "/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/stats",
             "/health", "/ready", "/metrics", "/v1/cache/purge", "/v1/cache/invalidate", "/v1/cache/stats",
             "/v1/feedback", "/v1/rollout")
"""Paths that get their own `endpoint` label; any other path is counted as `other`."""

_TYPES = {401: "invalid_request_error", 403: "permission_error", 413: "invalid_request_error",
          429: "rate_limit_error", 500: "server_error", 503: "service_unavailable_error", 504: "timeout_error"}
_BODY_LOG_CHARS = 2000
"""Most characters of a failed request's body logged when `log_bodies` is on."""


@dataclass
class RequestInfo:
    """What a handler tells the middleware about its request (kept in `scope["infopt"]`)."""

    model: str = ""
    reason: str = ""
    tenant: str | None = None
    """The cache tenant of the request's API key (None: [auth] is off, or an open path)."""
    key: str = ""
    """The name of the request's API key ("" without one)."""
    cache_key: Any = None
    """What the caches were asked about before routing (set with `looked_up` by a `HitPath` that missed)."""
    looked_up: bool = False
    """The caches were already asked (and missed): the handler does not ask again."""


def info_of(request: Request) -> RequestInfo:
    info = request.scope.setdefault("infopt", RequestInfo())
    assert isinstance(info, RequestInfo)
    return info


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    """`{"error": {"message", "type", "param", "code"}}` as OpenAI's API answers errors."""
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _error(request: Request | None, status: int, message: str, code: str, param: str | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    if request is not None:
        info_of(request).reason = code
    return JSONResponse(error_body(status, message, code, param), status_code=status,
                        headers=dict(headers) if headers else None)


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    parts, code = [], "invalid_request"
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        if err.get("type") == "json_invalid":
            code = "invalid_json"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts) + ".", code


def withheld(exc: BaseException) -> str:
    """The traceback of `exc` and of the exceptions it came from, every message left out (it may quote the
    request): exception types and code locations only."""
    parts: list[str] = []
    e: BaseException | None = exc
    seen: set[int] = set()
    while e is not None and id(e) not in seen and len(parts) < 8:
        seen.add(id(e))
        kind = type(e).__qualname__ if type(e).__module__ == "builtins" else f"{type(e).__module__}." \
            f"{type(e).__qualname__}"
        frames = "".join(traceback.format_list(traceback.extract_tb(e.__traceback__)))
        parts.append(f"Traceback (most recent call last):\n{frames}{kind}: <message withheld; log_bodies = true "
                     "shows it>")
        e = e.__cause__ if e.__cause__ is not None else None if e.__suppress_context__ else e.__context__
    return "\n\nThe above exception led to the following one:\n\n".join(reversed(parts))


class BodyRedactor(logging.Filter):
    """Replaces the exception of a log record by `withheld(exception)` unless `show` is on or the record was
    logged with `extra={"infopt_bodies": True}` (a deliberate body log of `log_bodies`)."""

    def __init__(self) -> None:
        super().__init__()
        self.show = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and not self.show \
                and not getattr(record, "infopt_bodies", False):
            record.exc_text = withheld(record.exc_info[1])
            record.exc_info = None
        return True


_REDACTOR = BodyRedactor()
_GUARDED = ("infopt.serve", "infopt.monitor", "uvicorn.error")


def guard_logs(log_bodies: bool) -> None:
    """Put the (process-wide) `BodyRedactor` on every logger of infopt.serve, infopt.monitor and uvicorn.error
    that exists now; `log_bodies` turns it off (the last server created in a process decides)."""
    _REDACTOR.show = log_bodies
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(_GUARDED)]
    for name in {*names, *_GUARDED}:
        logging.getLogger(name).addFilter(_REDACTOR)  # addFilter ignores a filter already there


def _log_crash(method: object, path: object, exc: BaseException, log_bodies: bool, body: bytes | None) -> None:
    if log_bodies:
        text = "" if body is None else f" (body: {body[:_BODY_LOG_CHARS].decode(errors='replace')})"
        log.error("internal error on %s %s%s", method, path, text, exc_info=exc, extra={"infopt_bodies": True})
    else:
        log.error("internal error on %s %s\n%s", method, path, withheld(exc))


def install_handlers(app: FastAPI, log_bodies: bool = False) -> None:
    """Answer every error with an OpenAI-style JSON body and the right status, never a traceback."""

    async def on_infopt(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InfoptError)
        retry = getattr(exc, "retry_after_s", None)
        headers = {"Retry-After": str(retry)} if isinstance(retry, int) else None
        return _error(request, exc.http_status, str(exc), error_code(exc), getattr(exc, "param", None), headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, code = _validation_message(exc)
        return _error(request, 400, message, code)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(request, exc.status_code, str(exc.detail), code, headers=exc.headers)

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        _log_crash(request.method, request.url.path, exc, log_bodies, None)
        return _error(request, 500, "Internal server error.", "internal_error")

    app.add_exception_handler(InfoptError, on_infopt)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)


class _TooLarge(Exception):
    pass


@dataclass(frozen=True)
class Admission:
    """The door's answer for a request to a batched model: `refused` (a 429), else admitted, and `leave` is
    called once it is answered."""

    model: str
    refused: QueueFull | None
    leave: Callable[[], None]


Shed = Callable[[str, bytes], Admission | None]
"""Asked with (path, body) before routing; None: not a request the door counts."""


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


_FORM = b"application/x-www-form-urlencoded"


def _json_scope(scope: Scope, body: bytes) -> Scope:
    """The scope with `content-type: application/json` when a JSON object came without it or as a form (what
    `curl -d '{...}'` sends), so the documented curl commands work; other bodies and types are left alone."""
    headers = scope.get("headers", [])
    kind = dict(headers).get(b"content-type", b"").split(b";")[0].strip().lower()
    if kind not in (b"", _FORM) or not body.lstrip().startswith(b"{"):
        return scope
    kept = [(k, v) for k, v in headers if k.lower() != b"content-type"]
    return {**scope, "headers": [*kept, (b"content-type", b"application/json")]}


class Turnstile:
    """Lets waiting tasks through one per event-loop iteration, so that the loop reads its sockets between them (a
    burst of admitted requests does not keep the requests behind it from meeting the door)."""

    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._releasing = False

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append(future)
        if not self._releasing:
            self._releasing = True
            loop.call_soon(self._release, loop)
        await future

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():  # its request was cancelled meanwhile: the next one goes
                future.set_result(None)
                break
        if self._waiting:
            loop.call_soon(self._release, loop)  # the next one in the next iteration, after the loop polls I/O
        else:
            self._releasing = False


HitPath = Callable[[Scope, bytes], Awaitable[ASGIApp | None]]
"""Answers a request from the caches before routing (the answer as an ASGI app), or None: route it."""


class ServeMiddleware:
    """Checks the API key when `auth` is given (401 / 403 / 429, before reading the body), caps request bodies at
    `max_body_bytes` (413), refuses what `shed` refuses (429, before any parsing or routing, so an overloaded
    server says no in microseconds; admitted requests go on one per event-loop iteration, through a `Turnstile`,
    so the requests of a burst meet the door before the admitted ones are parsed), answers what `hits` finds
    cached (without FastAPI's router, dependency and validation layers: about a third of the server's CPU samples
    on an exact hit), records requests in `metrics`, and answers 500 (logged without texts unless `log_bodies`)
    for anything that escapes the handlers."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, shed: Shed | None = None,
                 auth: Authenticator | None = None, log_bodies: bool = False, hits: HitPath | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.shed = shed
        self.auth = auth
        self.log_bodies = log_bodies
        self.hits = hits
        self.turnstile = Turnstile()

    async def _send_error(self, send: Send, status: int, message: str, code: str,
                          headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(error_body(status, message, code)).encode()
        extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *extra]})
        await send({"type": "http.response.body", "body": body})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _TooLarge
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        info = scope.setdefault("infopt", RequestInfo())
        status = 500
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                took = f"app;dur={(time.perf_counter() - start) * 1e3:.3f}".encode()
                message = {**message, "headers": [*message.get("headers", ()), (b"server-timing", took)]}
            await send(message)

        body: bytes | None = None
        door: Admission | None = None
        try:
            if self.auth is not None:
                try:
                    principal = self.auth.authorize(scope.get("path", ""), _header(scope, b"authorization"))
                except AuthRefused as e:
                    info.reason = error_code(e)
                    await self._send_error(send_tracked, e.http_status, str(e), info.reason, refusal_headers(e))
                    return
                if principal is not None:
                    info.tenant, info.key = principal.tenant, principal.name
            body = await self._read_body(scope, receive)
            door = self.shed(scope.get("path", ""), body) if self.shed is not None else None
            if door is not None and door.refused is not None:
                refused = door.refused
                info.model, info.reason = door.model, refused.code
                door = None  # not admitted: nothing to leave
                await self._send_error(send_tracked, 429, str(refused), refused.code,
                                       {"Retry-After": str(refused.retry_after_s)})
                return
            if door is not None:  # admitted: one at a time, so the requests that came with it meet the door first
                await self.turnstile.turn()
            replayed = False
            scope = _json_scope(scope, body)

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            cached = await self.hits(scope, body) if self.hits is not None else None
            await (cached or self.app)(scope, replay, send_tracked)
        except _TooLarge:
            info.reason = "body_too_large"
            await self._send_error(send_tracked, 413, f"The request body is over {self.max_body_bytes} bytes.",
                                   "body_too_large")
        except Exception as e:
            _log_crash(scope.get("method"), scope.get("path"), e, self.log_bodies, body)
            info.reason = "internal_error"
            if not started:
                await self._send_error(send_tracked, 500, "Internal server error.", "internal_error")
        finally:
            if door is not None:
                door.leave()
            path = scope.get("path", "")
            endpoint = path if path in ENDPOINTS else "other"
            self.metrics.request(endpoint, info.model, status, time.perf_counter() - start)
            if status >= 400:
                self.metrics.rejected(info.model, info.reason or str(status))
