"""Fuzzing the TOML readers (hypothesis, bounded): the server config (`load_serve_config`) and the requirements file
(`Requirements.from_toml`), with random bytes and with documents made of their own keys holding random values.
Every case is a config or one InfoptError (never another exception)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infopt.errors import InfoptError
from infopt.optimize import Requirements
from infopt.serve import ServeConfig, load_serve_config

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)

SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=10),
    st.sampled_from(["", "0", "1m", "20m", "redis", "sqlite", "memory", "x", "127.0.0.1", "latency", "1%", "-1%",
                     "nan%", "size", "auto", "classify", "redis://127.0.0.1:1/0"]),
    st.sampled_from([0, 1, -1, 65536, 2**31, 0.5, -0.0, 1e308])
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                      max_leaves=6)


def _toml(value: Any) -> str:
    """`value` as a TOML value (inline tables for mappings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def _tables(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    """Mappings of some of `cls`'s own field names (nested configs as tables) to random values, now and then an
    unknown key."""
    entries: dict[str, st.SearchStrategy[Any]] = {}
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            entries[f.name] = st.one_of(_tables(type(default)), VALUES)
        else:
            entries[f.name] = VALUES
    entries["not_a_key"] = VALUES
    return st.fixed_dictionaries({}, optional=entries)


MODELS = st.one_of(
    st.dictionaries(st.text(max_size=6), st.one_of(st.text(max_size=8), VALUES), max_size=3),  # [models] a = "p"
    st.lists(st.fixed_dictionaries({}, optional={"name": VALUES, "path": VALUES, "max_tokens": VALUES,
                                                 "engine": VALUES}), max_size=3),
    VALUES,
)


def _with_file(text: str | bytes, check: Callable[[Path], None]) -> None:
    fd, name = tempfile.mkstemp(suffix=".toml", prefix="fuzz-")
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    try:
        check(Path(name))
    finally:
        os.unlink(name)


def _serve(path: Path) -> None:
    try:
        config = load_serve_config(path)
    except InfoptError as e:
        assert e.problem and e.fix
        return
    assert isinstance(config, ServeConfig) and config.models


def _requirements(path: Path) -> None:
    try:
        req = Requirements.from_toml(path)
    except InfoptError as e:
        assert e.problem and e.fix
        return
    assert isinstance(req, Requirements)
    req.allowed_drop(85.0)  # usable, not just built


@SETTINGS
@given(data=_tables(ServeConfig), models=MODELS, with_models=st.booleans())
@example(data={}, models=[{}], with_models=True)  # found by a longer run: a [[models]] table without name / path
@example(data={}, models=[{"name": "a"}], with_models=True)
def test_serve_config_documents(data: dict[str, Any], models: Any, with_models: bool) -> None:
    doc = {**data, "models": models} if with_models else data
    _with_file("\n".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in doc.items()), _serve)


@SETTINGS
@given(data=_tables(Requirements))
def test_requirements_documents(data: dict[str, Any]) -> None:
    _with_file("\n".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in data.items()), _requirements)


@SETTINGS
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_random_bytes(content: bytes | str) -> None:
    _with_file(content, _serve)
    _with_file(content, _requirements)


@pytest.mark.parametrize("content", [b"\xff\xfe[models]", "a = " + "[" * 50_000, "a = " + "{b = " * 50_000, b""])
def test_pathological_files(content: str | bytes, tmp_path: Path) -> None:
    _with_file(content, _serve)
    _with_file(content, _requirements)
    _serve(tmp_path)  # a folder
    _requirements(tmp_path / "missing.toml")
