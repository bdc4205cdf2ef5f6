"""Bundled models built on first use: one build per machine, however many processes or threads ask at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from infopt.models import _bundled
from infopt.models._bundled import BundledModel, bundled_path


def test_concurrent_first_uses_build_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFOPT_CACHE", str(tmp_path))
    builds: list[Path] = []

    def build(folder: Path) -> None:
        builds.append(folder)
        time.sleep(0.3)  # long enough for the other callers to arrive while it builds
        (folder / "config.json").write_text("{}")

    monkeypatch.setitem(_bundled.BUNDLED_MODELS, "slow", BundledModel("slow", "classification", "test", build=build))
    found: list[Path] = []
    threads = [threading.Thread(target=lambda: found.append(bundled_path("slow"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and found == [tmp_path / "models" / "slow"] * 4
    assert (tmp_path / "models" / "slow" / "config.json").exists()
