"""The main job on tiny models (fast) and on the real default teacher (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infopt.data import DataConfig
from infopt.errors import InfoptError
from infopt.evaluate import BenchConfig
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize import OptimizeConfig, candidates, optimize, plan_evaluation


def test_candidates_validate_scheme_names() -> None:
    assert [c.name for c in candidates("classification", ("dynamic-int8",))] == ["dynamic-int8"]
    assert {c.name for c in candidates("causal-lm")} >= {"weight-int8", "weight-int4"}
    with pytest.raises(InfoptError, match="int3"):
        candidates("classification", ("int3",))
    with pytest.raises(InfoptError, match="onnx"):
        candidates("causal-lm", ("onnx-int8",))


def test_plan_for_a_classifier_aligns_labels_by_name(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "flipped.csv"
    path.write_text("t,y\n" + "".join(f"text {i},{'positive' if i % 2 else 'negative'}\n" for i in range(40)))
    plan = plan_evaluation(tiny_bert_classifier, OptimizeConfig(data=DataConfig(str(path), "t", "y")))
    for text, label in zip(plan.spec.texts, plan.spec.labels, strict=True):
        assert label == int(text.split()[1]) % 2  # model order is negative=0, positive=1
    assert plan.metric == "accuracy" and plan.calibration


def test_plan_rejects_data_with_other_labels(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "three.csv"
    path.write_text("t,y\n" + "".join(f"text {i},{'abc'[i % 3]}\n" for i in range(60)))
    with pytest.raises(InfoptError, match="labels"):
        plan_evaluation(tiny_bert_classifier, OptimizeConfig(data=DataConfig(str(path), "t", "y")))


def test_plan_for_a_classifier_without_data_asks_for_it(tiny_bert_classifier: LoadedModel) -> None:
    with pytest.raises(InfoptError, match="--data"):
        plan_evaluation(tiny_bert_classifier, OptimizeConfig())


def test_optimize_tiny_classifier_writes_a_complete_report(
    tiny_bert_classifier: LoadedModel, reviews_csv: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "tiny"
    save_model(tiny_bert_classifier, model_dir)
    config = OptimizeConfig(
        model=str(model_dir),
        data=DataConfig(str(reviews_csv), "review", "sentiment"),
        output=tmp_path / "report",
        schemes=("dynamic-int8", "dynamic-int8-emb"),
        bench=BenchConfig(isolate=False),
    )
    run, folder = optimize(config)
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
    model_dir = tmp_path / "tiny"
    save_model(tiny_bert_classifier, model_dir)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("infopt.optimize._run.write_report", boom)
    config = OptimizeConfig(
        model=str(model_dir), data=DataConfig(str(reviews_csv), "review", "sentiment"),
        output=tmp_path / "report", schemes=("dynamic-int8",), bench=BenchConfig(isolate=False),
    )
    with pytest.raises(RuntimeError):
        optimize(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.csv", "tiny"]


@pytest.mark.slow
def test_default_teacher_is_accurate() -> None:
    teacher = load_model("minilm-l6-rt")
    assert teacher.manifest.task == "classification"
    assert teacher.manifest.labels == ["rotten", "fresh"]
    assert teacher.manifest.metrics["test_accuracy"] >= 78.0


@pytest.mark.slow
def test_default_job_on_the_real_teacher(tmp_path: Path) -> None:
    config = OptimizeConfig(output=tmp_path / "run", schemes=("dynamic-int8-emb", "onnx-int8"), eval_limit=200)
    run, folder = optimize(config)
    base, q8, ort8 = run.variants
    assert base.quality["accuracy"] > 70
    for v in (q8, ort8):
        assert abs(v.quality["accuracy"] - base.quality["accuracy"]) < 3
        assert v.size_mb < 0.35 * base.size_mb
    rows = [line for line in (folder / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0].strip("| ") for r in rows[1:]] == [v.name for v in run.variants]
