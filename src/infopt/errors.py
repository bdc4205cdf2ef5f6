"""The errors infopt raises on purpose. Each names the problem and the fix, and maps onto a CLI exit code and an
HTTP status. A bug in infopt is never one of these: it stays an ordinary exception (and a traceback).

    InfoptError              base: `problem`, `fix`, `exit_code`, `http_status`
    ├── UserError            bad input: a path, data, an option, a request (exit 2, HTTP 400)
    ├── NotApplicable        a valid request that does not apply to this model (exit 2, HTTP 422; optimize skips it)
    └── MissingDependency    a package, a bundled asset or a service is missing (exit 3, HTTP 503)

An error raised while handling a library's exception names that exception in its message and is raised
`from None`: the user sees one line; a bug is never wrapped into one of these.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["InfoptError", "MissingDependency", "NotApplicable", "UserError"]


class InfoptError(Exception):
    """Base of the errors meant for the user. Raise one of the subclasses."""

    exit_code: ClassVar[int] = 2
    http_status: ClassVar[int] = 400

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} Fix: {fix}")
        self.problem = problem
        self.fix = fix


class UserError(InfoptError):
    """The user's input is wrong: a path, a file, data, an option or a request field."""


class NotApplicable(InfoptError):
    """Valid on its own but not for this model (e.g. an ONNX scheme for a causal LM)."""

    http_status: ClassVar[int] = 422


class MissingDependency(InfoptError):
    """Something infopt needs is not installed or not reachable: a package, a bundled asset, a service."""

    exit_code: ClassVar[int] = 3
    http_status: ClassVar[int] = 503
