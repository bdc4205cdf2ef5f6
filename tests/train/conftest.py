"""One torch thread per test: on a small shared machine extra intra-op threads only add contention."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs tiny models on one thread."""
