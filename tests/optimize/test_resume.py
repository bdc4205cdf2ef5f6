"""An interrupted `infopt optimize` keeps its finished variants and `--resume` continues from them: in process (an
interrupt injected at the Nth measurement) and for real (SIGTERM, then SIGINT, to an `infopt optimize` process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from infopt._atomic import MARKER_FILE, output_kind
from infopt.data import DataConfig
from infopt.errors import UserError
from infopt.evaluate import BenchConfig
from infopt.models import LoadedModel, save_model
from infopt.optimize import OptimizeConfig, optimize
from infopt.optimize._resume import INTERRUPTED, JOURNAL, Interrupted
from infopt.optimize._run import RunBench

INFOPT = str(Path(sys.executable).parent / "infopt")
RECIPES = ("dynamic-int8", "dynamic-int8-emb", "weight-int8")
REAL = ("dynamic-int8",)


def _config(model: Path, csv: Path, out: Path | None, **kw: object) -> OptimizeConfig:
    return OptimizeConfig(model=str(model), data=DataConfig(str(csv), "review", "sentiment"), output=out,
                          recipes=RECIPES, bench=BenchConfig(isolate=False), reuse_builds=False,
                          **kw)  # type: ignore[arg-type]


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Counts RunBench's measurements; `state["stop_at"] = N` sends SIGINT during the Nth one."""
    state: dict[str, object] = {"measured": [], "stop_at": None}
    real = RunBench._measure

    def measure(self: RunBench, path: Path) -> object:
        measured = state["measured"]
        assert isinstance(measured, list)
        measured.append(path.name)
        if state["stop_at"] == len(measured):
            signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, delivered to this (the main) thread
        return real(self, path)

    monkeypatch.setattr(RunBench, "_measure", measure)
    return state


@pytest.mark.usefixtures("private_cache")
def test_an_interrupted_run_resumes_from_its_last_finished_variant(
    tiny_bert_classifier: LoadedModel, reviews_csv: Path, tmp_path: Path, counted: dict[str, object]
) -> None:
    save_model(tiny_bert_classifier, tmp_path / "tiny")
    out = tmp_path / "report"
    counted["stop_at"] = 3  # baseline, dynamic-int8 finished; interrupted while measuring dynamic-int8-emb
    with pytest.raises(Interrupted) as e:
        optimize(_config(tmp_path / "tiny", reviews_csv, out))
    assert "--resume" in e.value.message and str(out) in e.value.message and "1 finished variant" in e.value.message
    assert output_kind(out) == INTERRUPTED
    assert sorted(p.name for p in (out / "variants").iterdir()) == ["baseline", "dynamic-int8"]  # not the unfinished
    assert sorted(json.loads((out / JOURNAL).read_text())["variants"]) == ["baseline", "dynamic-int8"]
    assert not (out / "results.json").exists() and not (out / "report.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "reviews.csv", "tiny"]  # no temporary folder

    with pytest.raises(UserError, match="--resume"):  # neither resumed nor overwritten: refused, untouched
        optimize(_config(tmp_path / "tiny", reviews_csv, out))
    with pytest.raises(UserError, match="another model, data, seed"):
        optimize(_config(tmp_path / "tiny", reviews_csv, out, resume=True, seed=1))
    assert output_kind(out) == INTERRUPTED

    counted["measured"], counted["stop_at"] = [], None
    run, folder = optimize(_config(tmp_path / "tiny", reviews_csv, out, resume=True))
    assert counted["measured"] == ["dynamic-int8-emb", "weight-int8"]  # the finished ones are not measured again
    assert [v.name for v in run.variants][1:] == list(RECIPES)
    reused = {d["variant"]: d["action"] for d in run.decisions if "reused" in d["action"]}
    assert set(reused) == {run.variants[0].name, "dynamic-int8"}
    assert any("reused from the interrupted run" in n for n in run.variants[1].notes)
    assert output_kind(folder) == "report" and not (folder / JOURNAL).exists()
    assert "reused from the interrupted run" in (folder / "report.md").read_text()
    assert sorted(p.name for p in (folder / "variants").iterdir()) == ["baseline", *sorted(RECIPES)]

    with pytest.raises(UserError, match="nothing to resume"):
        optimize(_config(tmp_path / "tiny", reviews_csv, out, resume=True))
    with pytest.raises(UserError, match="no --output was given"):
        optimize(_config(tmp_path / "tiny", reviews_csv, None, resume=True))


def _wait_for(check: object, proc: subprocess.Popen[str], timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _journal_names(tmp_path: Path) -> set[str]:
    for path in tmp_path.glob(".report.tmp-*/" + JOURNAL):
        try:
            return set(json.loads(path.read_text())["variants"])
        except (OSError, ValueError):
            pass
    return set()


def _interrupt(cmd: list[str], tmp_path: Path, env: dict[str, str], sig: int, after: set[str]) -> tuple[int, str]:
    """Run `cmd`, send `sig` once the run's journal holds `after`; returns (exit code, stderr) and checks that the
    measuring processes died with it."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for(lambda: after <= _journal_names(tmp_path), proc)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"still running after the interrupt: {alive}"
    return proc.returncode, err


@pytest.mark.slow
def test_sigterm_stops_a_real_run_cleanly_and_resume_continues_it(
    tiny_bert_classifier: LoadedModel, reviews_csv: Path, tmp_path: Path
) -> None:
    save_model(tiny_bert_classifier, tmp_path / "tiny")
    out = tmp_path / "report"
    cmd = [INFOPT, "optimize", "--model", str(tmp_path / "tiny"), "--data", str(reviews_csv), "--text-column",
           "review", "--label-column", "sentiment", "--recipes", ",".join(REAL), "--output", str(out)]
    env = {**os.environ, "INFOPT_CACHE": str(tmp_path / "cache"), "INFOPT_BUILDS": str(tmp_path / "builds")}

    code, err = _interrupt(cmd, tmp_path, env, signal.SIGTERM, {"baseline"})  # while dynamic-int8 is measured
    assert code == 143, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("infopt: interrupted") and "--resume" in lines[-1], err
    assert output_kind(out) == INTERRUPTED and (out / MARKER_FILE).is_file()
    done = set(json.loads((out / JOURNAL).read_text())["variants"])
    assert "baseline" in done and {p.name for p in (out / "variants").iterdir()} == done
    assert not list(tmp_path.glob(".report.*"))

    proc = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "reused from the interrupted run: baseline" in proc.stderr
    saved = json.loads((out / "results.json").read_text())
    assert [v["name"] for v in saved["variants"]][1:] == list(REAL)
    assert {d["status"] for d in saved["decisions"] if "reused" in d["action"]} == {"baseline"}
    assert output_kind(out) == "report" and not (out / JOURNAL).exists()
