"""Helpers for the quantize tests: sample texts and a save / load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from infopt.models import LoadedModel, load_model, save_model

TEXTS = [
    "a gripping, beautifully shot film",
    "the plot falls apart in the second half and never recovers",
    "fine",
    "an utterly charming comedy with a terrific cast, though it runs a little long",
]


@pytest.fixture
def texts() -> list[str]:
    return list(TEXTS)


@pytest.fixture
def roundtrip(tmp_path: Path):  # type: ignore[no-untyped-def]
    """save_model then load_model into a fresh folder; returns the reloaded LoadedModel."""

    def run(model: LoadedModel) -> LoadedModel:
        folder = tmp_path / f"saved-{len(list(tmp_path.iterdir()))}"
        saved = save_model(model, folder)
        back = load_model(folder)
        assert back.manifest.fingerprint == saved.manifest.fingerprint
        return back

    return run


def assert_same_outputs(a: LoadedModel, b: LoadedModel, texts: list[str]) -> None:
    torch.testing.assert_close(a.predict(texts), b.predict(texts), rtol=0, atol=1e-6)
