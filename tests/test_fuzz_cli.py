"""Fuzzing the CLI (hypothesis, bounded): `infopt.cli.main(argv)` in process with random flags and values for every
subcommand's parser. Each run ends 0 / 2 / 3, quickly, with at most one error line and never a traceback; no long job
starts (the models, teachers and servers named are nonexistent, the data files garbage)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infopt.cli import build_parser, main

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
ROOT = Path("/nonexistent-infopt-fuzz")
JUNK = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "-1", "0", "1", "nan", "inf", "1e309", "--", "-", "x" * 300, "1%", "-5%", "20m", "0s", "a,b",
                     ",", "5,", "2:4", "0:0", "prune-2:4+onnx-int8", "dynamic-int8", "distill-l3", "rotten-tomatoes",
                     "news", "latency", "magnitude", "layers=0,2", "random:3", "every-other", "\x00", "é", "=", "a=b",
                     str(ROOT / "data.csv"), str(ROOT / "r.toml")]),
)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every leaf command: "optimize", "rollout status", "cache calibrate", ..."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = _subparsers(sub)
                out.update({f"{name} {k}": v for k, v in inner.items()} if inner else {name: sub})
    return out


COMMANDS = _subparsers(build_parser())
SAFE: dict[str, list[str]] = {  # appended last (argparse keeps the last value): nothing long can start
    "optimize": ["--model", str(ROOT / "model")], "bench": ["--model", str(ROOT / "model")],
    "quantize": ["--model", str(ROOT / "model")], "prune": ["--model", str(ROOT / "model")],
    "distill": ["--teacher", str(ROOT / "teacher")], "bench-generate": ["--model", str(ROOT / "model")],
    "serve": ["--config", str(ROOT / "serve.toml")],
    "loadtest": ["--requests", "1", "--duration", "0.5", "--timeout-s", "0.5", "--data", str(ROOT / "t.csv")],
}
POSITIONAL = {"rollout status": ["http://127.0.0.1:1"], "loadtest": ["http://127.0.0.1:1"],
              "cache calibrate": [str(ROOT / "pairs.jsonl")], "report": [str(ROOT / "run")]}


def _flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and "--help" not in a.option_strings]


@st.composite
def argvs(draw: st.DrawFn, command: str, tmp: Path) -> list[str]:
    parser = COMMANDS[command]
    argv = command.split()
    positional = POSITIONAL.get(command, [])
    mutate: bool = bool(positional) and draw(st.booleans())
    argv += [draw(st.sampled_from([*positional, "x", "-"]))] if mutate else positional
    for action in draw(st.lists(st.sampled_from(_flags(parser)), max_size=6)) if _flags(parser) else []:
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            argv.append(flag)
            continue
        values = st.sampled_from(list(action.choices)) if action.choices else JUNK
        argv += [flag, draw(st.one_of(values, JUNK))]
        if flag in ("--output", "--export", "--json"):
            argv[-1] = str(tmp / argv[-1].replace("/", "_").replace("\x00", "_")[:40])
    if draw(st.integers(0, 9)) == 0:  # a mutation: a token dropped or a junk token inserted
        at = draw(st.integers(0, len(argv)))
        argv = [*argv[:at], draw(JUNK), *argv[at + 1:]] if draw(st.booleans()) else [*argv[:at], *argv[at + 1:]]
    if command == "serve" and draw(st.booleans()):
        argv.insert(1, f"x={ROOT / 'model'}")
    return argv + SAFE.get(command, [])


@pytest.fixture
def quiet_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("INFOPT_CACHE", str(tmp_path / "cache"))
    for flag in ("INFOPT_ALLOW_PICKLE", "INFOPT_TRUST_REMOTE_CODE"):  # --allow-pickle sets it: undone after
        monkeypatch.setenv(flag, "")
    monkeypatch.chdir(tmp_path)  # default outputs (infopt-runs/, calibration.json) land here
    yield tmp_path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    code = main(argv)
    seconds = time.monotonic() - t0
    out = capsys.readouterr()
    assert code in (0, 2, 3), (argv, code, out.err)
    assert "Traceback" not in out.err and "Traceback" not in out.out, (argv, out.err)
    assert seconds < 30, (argv, seconds)
    if code:
        errors = [line for line in out.err.splitlines() if line.startswith(("infopt: error:", "usage:", "infopt "))]
        assert errors, (argv, out.err)


@pytest.mark.parametrize("argv", [
    ["report", "x" * 300],  # found by longer runs: a name too long for the filesystem (was OSError)
    ["rollout", "status", "\x1fhttp://x"],  # a URL httpx refuses to parse (was httpx.InvalidURL)
    ["report", "/dev/null"], ["optimize", "--requirements", "/dev/null", "--model", str(ROOT)],
])
def test_found_by_longer_runs(argv: list[str], quiet_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(argv, capsys)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_random_command_lines(command: str, quiet_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    @SETTINGS
    @given(argv=argvs(command, quiet_env))
    def check(argv: list[str]) -> None:
        _run(argv, capsys)

    check()


@SETTINGS
@given(argv=st.lists(JUNK, max_size=6))
def test_random_tokens(argv: list[str], quiet_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if argv[:1] and argv[0] in {c.split()[0] for c in COMMANDS}:
        argv = ["--version-of-nothing", *argv]  # only the top-level parser's errors here
    _run(argv, capsys)


def test_every_command_is_fuzzed() -> None:
    assert {"optimize", "bench", "quantize", "prune", "distill", "serve", "loadtest", "report", "models",
            "rollout status", "cache calibrate", "bench-generate"} <= set(COMMANDS)
