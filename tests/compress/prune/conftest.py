"""One torch thread per test (a small shared machine), and a tiny labelled dataset for recovery."""

from __future__ import annotations

import pytest

from infopt.data import TextDataset


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs tiny models on one thread."""


@pytest.fixture
def reviews() -> TextDataset:
    """40 short labelled reviews (0 = negative, 1 = positive)."""
    good = ["a good and great film", "wonderful acting, a joy", "the best movie of the year", "moving and funny"]
    bad = ["a bad and awful film", "dull, boring and too long", "the worst script in years", "a mess"]
    texts = [t for pair in zip(good, bad, strict=True) for t in pair] * 5
    return TextDataset("reviews", texts, [0, 1] * 20, ["positive", "negative"])


@pytest.fixture
def texts() -> list[str]:
    return [
        "a great film with a moving story",
        "the market fell on monday after weak earnings",
        "hi",
        "an unexpectedly funny comedy, with superb performances from the whole cast!",
    ] * 3
