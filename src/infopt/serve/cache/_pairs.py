"""The labelled pair set of the semantic cache (data/pairs.jsonl): load it, split it, count it; read a user's."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infopt.errors import UserError

__all__ = ["PAIRS_FILE", "Pair", "count_pairs", "load_pairs", "read_user_pairs"]

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


_FORMAT = 'each line one JSON object like {"a": "prompt", "b": "prompt", "same": true}'
_WANTED = {"a": "a non-empty string (a prompt)", "b": "a non-empty string (a prompt)",
           "same": "true or false (a JSON boolean, not a string or number)", "kind": "a string", "family": "a string"}


def _field(row: dict[str, Any], name: str, where: str, required: bool = True) -> Any:
    """row[name], checked: `same` a bool, the others strings (`a`, `b` non-empty); optional ones default to ""."""
    if row.get(name) is None and not required:
        return ""
    value = row.get(name)
    ok = isinstance(value, bool) if name == "same" else isinstance(value, str) and (not required or value.strip())
    if not ok:
        problem = f"{where} has no field {name!r}." if name not in row else f"{where}: {name!r} is not {_WANTED[name]}."
        raise UserError(problem, f"give every line {name!r} as {_WANTED[name]}; {_FORMAT}.")
    return value


def read_user_pairs(path: str | Path, option: str = "PAIRS") -> list[Pair]:
    """Labelled pairs from a user's JSONL file: `a`, `b`, `same` required; `kind`, `family` optional.

    Each problem is one UserError naming the line and the fix; a file needs positive and negative pairs.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise UserError(f"The {option} file {path} {what}.", f"give a .jsonl file of labelled pairs ({_FORMAT}).")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"The {option} file {path} cannot be read ({type(e).__name__}).",
                        "give a readable UTF-8 .jsonl file.") from None
    pairs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            row = json.loads(line)
        except ValueError:
            raise UserError(f"{where} is not JSON.", f"write {_FORMAT}.") from None
        if not isinstance(row, dict):
            raise UserError(f"{where} is not a JSON object.", f"write {_FORMAT}.")
        a, b, same = _field(row, "a", where), _field(row, "b", where), _field(row, "same", where)
        kind, family = _field(row, "kind", where, False), _field(row, "family", where, False)
        pairs.append(Pair(a, b, same, kind, "user", family))
    if not pairs:
        raise UserError(f"The {option} file {path} holds no pairs.", f"write {_FORMAT}.")
    n_pos = sum(p.same for p in pairs)
    if n_pos in (0, len(pairs)):
        missing = "positive (\"same\": true)" if n_pos == 0 else "negative (\"same\": false)"
        raise UserError(f"The {option} file {path} has no {missing} pairs; "
                        "the false-hit rate and the recall need both.",
                        "add pairs that mean the same thing and near misses that do not.")
    return pairs
