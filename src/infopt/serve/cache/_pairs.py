"""The labelled pair set of the semantic cache (data/pairs.jsonl): load it, split it, count it."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PAIRS_FILE", "Pair", "count_pairs", "load_pairs"]

PAIRS_FILE = Path(__file__).with_name("data") / "pairs.jsonl"


@dataclass(frozen=True)
class Pair:
    """Two prompts; `same` when a cached answer to one is a right answer to the other."""

    a: str
    b: str
    same: bool
    kind: str
    split: str
    family: str = ""


def load_pairs(split: str | None = None, path: Path = PAIRS_FILE) -> list[Pair]:
    """All pairs, or those of one split (`calibration` or `heldout`)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pairs = [Pair(r["a"], r["b"], bool(r["same"]), r["kind"], r["split"], r.get("family", "")) for r in rows]
    return [p for p in pairs if split is None or p.split == split]


def count_pairs(pairs: list[Pair]) -> Counter[tuple[str, str, bool]]:
    """(split, kind, same) -> number of pairs."""
    return Counter((p.split, p.kind, p.same) for p in pairs)
