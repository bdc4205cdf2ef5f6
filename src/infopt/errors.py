"""The one error type for user mistakes: it names the problem and the fix."""

from __future__ import annotations

__all__ = ["InfoptError"]


class InfoptError(Exception):
    """A user error (bad path, bad data, bad option). The CLI prints it on one line and exits 2."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} Fix: {fix}")
        self.problem = problem
        self.fix = fix
