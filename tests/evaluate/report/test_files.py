"""The report folder: write_report, read_results, `infopt report DIR`, and the environment it records."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from infopt.cli import main
from infopt.errors import UserError
from infopt.evaluate import (
    RunResult,
    environment,
    read_results,
    render_html,
    render_markdown,
    rerender_report,
    write_report,
)


def test_write_report(optimized: RunResult, tmp_path: Path) -> None:
    write_report(optimized, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.md", "results.json"]
    assert (tmp_path / "report.md").read_text() == render_markdown(optimized)
    assert (tmp_path / "report.html").read_text() == render_html(optimized)
    assert read_results(tmp_path) == optimized


def test_rerender_keeps_results_and_rewrites_the_reports(optimized: RunResult, tmp_path: Path) -> None:
    write_report(optimized, tmp_path)
    before = (tmp_path / "results.json").read_text()
    (tmp_path / "report.md").write_text("stale")
    (tmp_path / "report.html").unlink()
    assert rerender_report(tmp_path) == optimized
    assert (tmp_path / "results.json").read_text() == before
    assert (tmp_path / "report.md").read_text() == render_markdown(optimized)
    assert (tmp_path / "report.html").read_text() == render_html(optimized)


def test_an_older_results_json_without_the_new_fields_loads(mixed: RunResult, tmp_path: Path) -> None:
    old = asdict(mixed)
    for key in ("machine", "requirements", "decisions", "chosen", "recommendation", "seconds", "price_per_hour"):
        del old[key]
    for v in old["variants"]:
        for key in ("recipe", "n_eval", "quality_ci", "predictions", "flips", "delta_ci", "status", "reasons",
                    "cost_per_1k"):
            del v[key]
        del v["speed"]["samples_ms"], v["speed"]["interleaved_p50_ms"]
    (tmp_path / "results.json").write_text(json.dumps(old))
    assert rerender_report(tmp_path) == mixed
    assert "No recommendation" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(("content", "problem"), [
    (None, "holds no results.json"),
    ("{not json", "cannot be read (JSONDecodeError: Expecting property name"),
    ("[1, 2]", "is not an infopt results file (no list of variants with their speed)."),
    ('{"model": "m"}', "is not an infopt results file (no list of variants with their speed)."),
    ('{"model": "m", "variants": [{"name": "b", "speed": {}}]}', "is not an infopt results file (TypeError: "),
    ('{"model": "m", "task": "t", "data": "d", "environment": {}, "variants": []}', "holds no variants"),
])
def test_a_missing_or_corrupt_results_json_is_one_user_error(tmp_path: Path, content: str | None,
                                                             problem: str) -> None:
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(UserError) as info:
        read_results(tmp_path)
    assert problem in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "report.md").exists()


def test_cli_report(optimized: RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    optimized.save(tmp_path / "results.json")
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "distill-l3+onnx-int8" in out and "report.html" in out
    assert (tmp_path / "report.md").read_text() == render_markdown(optimized)
    assert (tmp_path / "report.html").read_text() == render_html(optimized)


@pytest.mark.parametrize("setup", ["missing-folder", "no-results", "corrupt"])
def test_cli_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str) -> None:
    folder = tmp_path / "nope" if setup == "missing-folder" else tmp_path
    if setup == "corrupt":
        (tmp_path / "results.json").write_text('{"variants": ')
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("infopt: error: ") and err.count("\n") == 1 and "Fix: " in err, err


def test_environment() -> None:
    env = environment(seed=7)
    assert env["seed"] == 7
    assert env["cpu_count"] == os.cpu_count()
    assert env["torch_threads"] == torch.get_num_threads()
    versions = env["versions"]
    assert isinstance(versions, dict) and versions["torch"] == torch.__version__
    assert set(versions) == {"infopt", "torch", "transformers", "onnxruntime", "numpy"}
    assert isinstance(env["cpu"], str) and env["cpu"]
