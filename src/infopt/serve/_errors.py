"""The errors of serving, each an `InfoptError` with an HTTP status and a short machine-readable `code`.

    RequestError   400  a bad request (unknown model, empty input, too many inputs, a text over the token limit)
    WrongTask      422  a valid request the model cannot answer (embeddings from a classifier)
    BodyTooLarge   413  the request body is over `max_body_bytes`
    QueueFull      429  the model's queue is full; `retry_after_s` says when to try again
    Unavailable    503  the server is loading its models or draining for shutdown
    QueueTimeout   504  the request waited longer than `timeout_s` for its result
    ClientClosed   499  the client went away before its answer (only metrics see it)
    Unauthorized   401  no API key, or one the server does not know ([auth] on)
    Forbidden      403  an admin endpoint called with a key that is not an admin key
    RateLimited    429  a key over its rate limit or quota; `retry_after_s` says when to try again
"""

from __future__ import annotations

from typing import ClassVar

from infopt.errors import InfoptError, MissingDependency, NotApplicable, UserError

__all__ = ["AuthRefused", "BodyTooLarge", "ClientClosed", "Forbidden", "QueueFull", "QueueTimeout", "RateLimited",
           "RequestError", "Unauthorized", "Unavailable", "WrongTask", "error_code"]


class RequestError(UserError):
    """A request field is wrong (HTTP 400)."""

    def __init__(self, problem: str, fix: str, *, code: str = "invalid_request", param: str | None = None) -> None:
        super().__init__(problem, fix)
        self.code = code
        self.param = param


class WrongTask(NotApplicable):
    """The endpoint does not apply to the model's task (HTTP 422)."""

    code = "wrong_task"


class BodyTooLarge(InfoptError):
    """The request body is larger than the server accepts (HTTP 413)."""

    http_status: ClassVar[int] = 413
    code = "body_too_large"


class QueueFull(InfoptError):
    """The model's queue is full (HTTP 429 with Retry-After)."""

    http_status: ClassVar[int] = 429
    code = "queue_full"

    def __init__(self, model: str, max_queue: int, retry_after_s: int) -> None:
        super().__init__(f"The queue of model {model!r} is full ({max_queue} requests waiting).",
                         f"retry after {retry_after_s} s, or raise batching.max_queue.")
        self.retry_after_s = retry_after_s


class Unavailable(InfoptError):
    """The server cannot take requests now: it is loading or draining (HTTP 503)."""

    http_status: ClassVar[int] = 503

    def __init__(self, problem: str, fix: str, *, code: str = "unavailable") -> None:
        super().__init__(problem, fix)
        self.code = code


class QueueTimeout(InfoptError):
    """The request did not get its result in time (HTTP 504)."""

    http_status: ClassVar[int] = 504
    code = "timeout"


class ClientClosed(InfoptError):
    """The client disconnected before its answer (HTTP 499, nginx's code: nobody reads it but the metrics)."""

    http_status: ClassVar[int] = 499
    code = "client_closed"

    def __init__(self) -> None:
        super().__init__("The client closed the connection before the answer.", "nothing to do.")


class AuthRefused(InfoptError):
    """Base of the refusals of `[auth]` (answered before routing)."""

    code = "invalid_api_key"


class Unauthorized(AuthRefused):
    """No API key, or an unknown one (HTTP 401)."""

    http_status: ClassVar[int] = 401


class Forbidden(AuthRefused):
    """A valid key without the right to an admin endpoint (HTTP 403)."""

    http_status: ClassVar[int] = 403
    code = "admin_key_required"


class RateLimited(AuthRefused):
    """A key over its rate limit (`rate_limited`) or quota (`quota_exceeded`) (HTTP 429 with Retry-After)."""

    http_status: ClassVar[int] = 429

    def __init__(self, problem: str, retry_after_s: int, code: str) -> None:
        super().__init__(problem, f"retry after {retry_after_s} s, or ask for a higher limit.")
        self.retry_after_s = retry_after_s
        self.code = code


def error_code(error: InfoptError) -> str:
    """The `code` of an error of this module; for other infopt errors, one derived from its class."""
    code = getattr(error, "code", None)
    if isinstance(code, str):
        return code
    if isinstance(error, NotApplicable):
        return "not_applicable"
    if isinstance(error, MissingDependency):
        return "missing_dependency"
    return "invalid_request"
