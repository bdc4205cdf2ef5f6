"""Deterministic, seeded splits: stratified train / validation / test, and a plain hold-out."""

from __future__ import annotations

import random
from dataclasses import dataclass

from infopt.data._datasets import TextDataset
from infopt.errors import UserError

__all__ = ["Splits", "holdout", "split_dataset"]


@dataclass(frozen=True)
class Splits:
    """The three parts of one dataset."""

    train: TextDataset
    validation: TextDataset
    test: TextDataset


def split_dataset(data: TextDataset, seed: int = 0, validation: float = 0.1, test: float = 0.1) -> Splits:
    """Split each class in the same proportions; the same seed always gives the same split."""
    if len(data) < 10:
        raise UserError(f"Dataset {data.name} has {len(data)} rows.", "give at least 10 labelled rows.")
    rng = random.Random(seed)
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for label in sorted(set(data.labels)):
        idx = [i for i, y in enumerate(data.labels) if y == label]
        rng.shuffle(idx)
        n_test, n_val = round(len(idx) * test), round(len(idx) * validation)
        parts["test"] += idx[:n_test]
        parts["validation"] += idx[n_test : n_test + n_val]
        parts["train"] += idx[n_test + n_val :]
    for name in parts:
        rng.shuffle(parts[name])
        if not parts[name]:
            raise UserError(f"Dataset {data.name} is too small for a {name} split.", "give more rows.")
    return Splits(*(data.subset(parts[n]) for n in ("train", "validation", "test")))


def holdout(data: TextDataset, seed: int = 0, share: float = 0.1) -> tuple[TextDataset, TextDataset]:
    """(rest, held out): `share` of the rows (at least one), drawn at random with `seed` regardless of class."""
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    n = max(1, round(len(order) * share))
    if len(order) - n < 1:
        raise UserError(f"{len(data)} examples are too few to hold some out.", "give at least 2 examples.")
    return data.subset(order[n:]), data.subset(order[:n])
