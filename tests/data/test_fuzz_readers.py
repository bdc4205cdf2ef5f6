"""Fuzzing the data readers (hypothesis, bounded): CSV / JSON Lines / .txt files of random bytes, random cells and
labels, wrong columns, empty files, folders and unreadable paths. Every case loads or is one InfoptError."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infopt.data import DataConfig, load_dataset, load_text_corpus
from infopt.errors import InfoptError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
SUFFIXES = st.sampled_from([".csv", ".jsonl", ".json", ".txt", ".CSV", ""])
COLUMNS = st.sampled_from(["text", "label", "review", "", "a,b", "\x00", "ü", None])
CELL = st.one_of(st.text(max_size=12), st.integers(), st.floats(allow_nan=True), st.none(), st.booleans(),
                 st.lists(st.integers(), max_size=2), st.sampled_from(["-", "--5", "²", "٣", "0", "-1", "①", " "]))


def _load(path: Path, text: str | None, label: str | None) -> None:
    """Both readers on `path`: each returns, or raises an InfoptError (anything else fails the test)."""
    try:
        data = load_dataset(DataConfig(str(path), text, label))
        assert len(data.texts) == len(data.labels) > 0
        assert all(0 <= y < len(data.label_names) for y in data.labels)
    except InfoptError as e:
        assert e.problem and e.fix
    try:
        texts = load_text_corpus(str(path), text or "text")
        assert texts and all(t.strip() for t in texts)
    except InfoptError as e:
        assert e.problem and e.fix


def _write(content: bytes, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix, prefix="fuzz-")
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    return Path(name)


@SETTINGS
@given(content=st.binary(max_size=400), suffix=SUFFIXES, text=COLUMNS, label=COLUMNS)
def test_random_bytes(content: bytes, suffix: str, text: str | None, label: str | None) -> None:
    path = _write(content, suffix)
    try:
        _load(path, text, label)
    finally:
        path.unlink()


@SETTINGS
@given(labels=st.lists(CELL, min_size=1, max_size=6), texts=st.lists(CELL, min_size=1, max_size=6))
def test_random_labels_under_the_right_columns(labels: list[object],
                                               texts: list[object]) -> None:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["text", "label"])
    w.writerows(zip(texts, labels, strict=False))
    path = _write(out.getvalue().encode(), ".csv")
    try:
        _load(path, "text", "label")
    finally:
        path.unlink()


@SETTINGS
@given(header=st.lists(COLUMNS.filter(lambda c: c is not None), min_size=0, max_size=4),
       rows=st.lists(st.lists(CELL, max_size=5), max_size=8), text=COLUMNS, label=COLUMNS,
       as_json=st.booleans())
def test_random_tables(header: list[str], rows: list[list[object]], text: str | None, label: str | None,
                       as_json: bool) -> None:
    if as_json:
        lines = [json.dumps(dict(zip(header, r, strict=False)), allow_nan=True) for r in rows]
        lines += [json.dumps(r) for r in rows[:1]]  # and a line that is not an object
        path = _write("\n".join(lines).encode(), ".jsonl")
    else:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(header)
        w.writerows(rows)
        path = _write(out.getvalue().encode(), ".csv")
    try:
        _load(path, text, label)
    finally:
        path.unlink()


@pytest.mark.parametrize("nested", ["[" * 100_000, '{"a":' * 100_000])
def test_deeply_nested_json_lines(tmp_path: Path, nested: str) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text(nested)
    _load(path, "text", "label")


def test_folders_and_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "folder.csv").mkdir()
    _load(tmp_path / "folder.csv", "text", "label")
    (tmp_path / "corpus.txt").mkdir()
    _load(tmp_path / "corpus.txt", "text", "label")
    bad = tmp_path / "latin.txt"
    bad.write_bytes("caf\xe9\n\nna\xefve".encode("latin-1"))
    _load(bad, "text", "label")
    _load(tmp_path / "missing.jsonl", "text", "label")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _load(empty, "text", "label")
    (tmp_path / "link.csv").symlink_to(tmp_path / "link.csv")  # a symlink loop
    _load(tmp_path / "link.csv", "text", "label")
