"""The `infopt` command through its real console-script entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infopt.models import LoadedModel, save_model

INFOPT = str(Path(sys.executable).parent / "infopt")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFOPT, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def assert_user_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Fix:" in lines[0]
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def model_dir(tmp_path: Path, tiny_bert_classifier: LoadedModel) -> Path:
    save_model(tiny_bert_classifier, tmp_path / "tiny")
    return tmp_path / "tiny"


def test_models_lists_bundled_models() -> None:
    proc = run("models")
    assert proc.returncode == 0, proc.stderr
    for name in ("minilm-l6-rt", "minilm-l6", "minilm-l3", "smollm2-135m"):
        assert name in proc.stdout


def test_missing_model_path(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert_user_error(run("optimize", "--model", str(tmp_path / "nope"), "--output", str(out)), "nope")
    assert not out.exists()


def test_folder_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    out = tmp_path / "report"
    assert_user_error(run("bench", "--model", str(tmp_path / "notes"), "--output", str(out)), "config.json")
    assert not out.exists()


def test_csv_without_the_named_columns(tmp_path: Path, model_dir: Path) -> None:
    csv = tmp_path / "other.csv"
    csv.write_text("a,b\nx,1\ny,0\n")
    out = tmp_path / "report"
    proc = run("optimize", "--model", str(model_dir), "--data", str(csv), "--text-column", "review",
               "--label-column", "sentiment", "--output", str(out))
    assert_user_error(proc, "review", "--text-column")
    assert not out.exists()


def test_empty_dataset(tmp_path: Path, model_dir: Path) -> None:
    csv = tmp_path / "empty.csv"
    csv.write_text("review,sentiment\n")
    out = tmp_path / "report"
    proc = run("optimize", "--model", str(model_dir), "--data", str(csv), "--text-column", "review",
               "--label-column", "sentiment", "--output", str(out))
    assert_user_error(proc, "empty")
    assert not out.exists()


def test_unknown_quantization_scheme(tmp_path: Path, model_dir: Path, reviews_csv: Path) -> None:
    out = tmp_path / "q"
    assert_user_error(run("quantize", "--model", str(model_dir), "--scheme", "int3", "--output", str(out)), "int3")
    assert not out.exists()
    proc = run("optimize", "--model", str(model_dir), "--data", str(reviews_csv), "--text-column", "review",
               "--label-column", "sentiment", "--recipes", "dynamic-int8,int3", "--output", str(out))
    assert_user_error(proc, "int3")
    assert not out.exists()


def test_optimize_on_a_users_model_and_csv(tmp_path: Path, model_dir: Path, reviews_csv: Path) -> None:
    out = tmp_path / "runs" / "reviews"
    proc = run("optimize", "--model", str(model_dir), "--data", str(reviews_csv), "--text-column", "review",
               "--label-column", "sentiment", "--recipes", "dynamic-int8", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "| variant |" in (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert [v["name"] for v in results["variants"]] == ["tiny-bert-classifier (baseline)", "dynamic-int8"]
    assert all(0 <= v["quality"]["accuracy"] <= 100 for v in results["variants"])
    assert (out / "variants" / "dynamic-int8" / "infopt.json").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_quantize_saves_a_loadable_variant(tmp_path: Path, model_dir: Path) -> None:
    out = tmp_path / "q8"
    proc = run("quantize", "--model", str(model_dir), "--scheme", "dynamic-int8", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "infopt.json").read_text())
    assert manifest["method"] == "quantize:dynamic-int8"


def test_quantize_calibrates_on_the_users_csv(tmp_path: Path, model_dir: Path, reviews_csv: Path) -> None:
    out = tmp_path / "smooth"
    proc = run("quantize", "--model", str(model_dir), "--scheme", "onnx-smooth-int8", "--data", str(reviews_csv),
               "--text-column", "review", "--label-column", "sentiment", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "infopt.json").read_text())
    assert manifest["format"] == "onnx" and manifest["method"] == "quantize:onnx-smooth-int8"
    info = manifest["metrics"]["quantize"]
    assert 0 < info["calibration"]["texts"] <= 40  # from the CSV's train split
    assert sum(info["smoothing"].values()) == 14  # every Linear of the tiny classifier
