"""The main job on tiny models (fast) and on the real default teacher (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infopt.data import DataConfig
from infopt.evaluate import BenchConfig
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize import OptimizeConfig, optimize


def tiny_run(model: LoadedModel, reviews_csv: Path, tmp_path: Path, *recipes: str) -> OptimizeConfig:
    """A run of `recipes` on `model` saved to tmp_path/tiny, scored on the reviews CSV, report in tmp_path/report."""
    save_model(model, tmp_path / "tiny")
    return OptimizeConfig(model=str(tmp_path / "tiny"), data=DataConfig(str(reviews_csv), "review", "sentiment"),
                          output=tmp_path / "report", recipes=recipes, bench=BenchConfig(isolate=False))



def test_optimize_tiny_classifier_writes_a_complete_report(
    tiny_bert_classifier: LoadedModel, reviews_csv: Path, tmp_path: Path
) -> None:
    run, folder = optimize(tiny_run(tiny_bert_classifier, reviews_csv, tmp_path, "dynamic-int8", "dynamic-int8-emb"))
    assert folder == tmp_path / "report"
    assert [v.name for v in run.variants] == ["tiny-bert-classifier (baseline)", "dynamic-int8", "dynamic-int8-emb"]
    sizes = [v.size_mb for v in run.variants]
    assert sizes[2] < sizes[1] < sizes[0]
    saved = json.loads((folder / "results.json").read_text())
    assert len(saved["variants"]) == 3
    assert load_model(folder / "variants" / "dynamic-int8-emb").manifest.method == "quantize:dynamic-int8-emb"


def test_optimize_leaves_nothing_when_a_step_fails(
    tiny_bert_classifier: LoadedModel, reviews_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_run(tiny_bert_classifier, reviews_csv, tmp_path, "dynamic-int8")

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("infopt.optimize._run.write_report", boom)
    with pytest.raises(RuntimeError):
        optimize(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.csv", "tiny"]


def test_optimize_measures_pruned_variants_next_to_the_baseline(
    tiny_bert_classifier: LoadedModel, reviews_csv: Path, tmp_path: Path
) -> None:
    config = tiny_run(tiny_bert_classifier, reviews_csv, tmp_path, "prune-structured", "prune-structured+onnx-int8",
                      "prune-unstructured-90")
    run, folder = optimize(config)
    names = [v.name for v in run.variants]
    assert names[1:] == ["prune-structured", "prune-structured+onnx-int8", "prune-unstructured-90"]
    structured, both, sparse = run.variants[1:]
    assert structured.params < run.baseline.params and both.size_mb < structured.size_mb
    assert sparse.size_mb < run.baseline.size_mb
    assert any("not expected to be faster" in n for n in sparse.notes)
    assert "not expected to be faster" in (folder / "report.md").read_text()
    recipe = load_model(folder / "variants" / "prune-structured+onnx-int8").manifest.recipe
    assert [s["stage"] for s in recipe] == ["prune", "quantize"]


@pytest.mark.slow
def test_default_teacher_is_accurate() -> None:
    teacher = load_model("minilm-l6-rt")
    assert teacher.manifest.task == "classification"
    assert teacher.manifest.labels == ["rotten", "fresh"]
    assert teacher.manifest.metrics["test_accuracy"] >= 78.0


@pytest.mark.slow
def test_default_job_on_the_real_teacher(tmp_path: Path) -> None:
    config = OptimizeConfig(output=tmp_path / "run", recipes=("dynamic-int8-emb", "onnx-int8"), eval_limit=200)
    run, folder = optimize(config)
    base, q8, ort8 = run.variants
    assert base.quality["accuracy"] > 70
    for v in (q8, ort8):
        assert abs(v.quality["accuracy"] - base.quality["accuracy"]) < 3
        assert v.size_mb < 0.35 * base.size_mb
    rows = [line for line in (folder / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0].strip("| ") for r in rows[1:]] == [v.name for v in run.variants]
