"""Distillation tests: one torch thread, a private cache folder (tiny data and classifiers: tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread_private_cache(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    one_torch_thread: None,
) -> None:
    """Fast tests write teacher caches to a temporary folder; slow tests keep the real cache (built models)."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("INFOPT_CACHE", str(tmp_path_factory.mktemp("infopt-cache")))
