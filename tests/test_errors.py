"""The error tree: each kind keeps problem and fix and maps onto an exit code and an HTTP status."""

from __future__ import annotations

import pytest

from infopt.errors import InfoptError, MissingDependency, NotApplicable, UserError


@pytest.mark.parametrize(
    ("kind", "exit_code", "status"), [(UserError, 2, 400), (NotApplicable, 2, 422), (MissingDependency, 3, 503)]
)
def test_kinds(kind: type[InfoptError], exit_code: int, status: int) -> None:
    e = kind("The thing is wrong.", "do the other thing.")
    assert isinstance(e, InfoptError) and (e.exit_code, e.http_status) == (exit_code, status)
    assert (e.problem, e.fix) == ("The thing is wrong.", "do the other thing.")
    assert str(e) == "The thing is wrong. Fix: do the other thing."
