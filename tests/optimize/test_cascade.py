"""Cascades and early exit as candidates: build from two variants, measure, recalibrate an early-exit model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from infopt.compress.cascade import CascadeModel
from infopt.compress.distill import DistillConfig, EarlyExitConfig, distill
from infopt.data import DataConfig, Splits, TextDataset
from infopt.errors import UserError
from infopt.evaluate import VariantResult
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize._cascade import (
    build_cascade,
    calibrate_early_exit,
    cascade_variant,
    early_exit_variant,
    interleaved_latencies,
    measure_cascade,
    validation_split,
)
from infopt.train import FinetuneConfig


def test_build_and_measure(tiny_teacher: LoadedModel, make_classifier: Callable[..., LoadedModel],
                           tokenizer: object, tmp_path: Path,
                           make_data: Callable[..., TextDataset]) -> None:
    validation, test = make_data(120, seed=5), make_data(80, seed=6)
    small = make_classifier(tokenizer, layers=1, seed=3, name="small")  # untrained: unsure, often wrong
    cascade = build_cascade(small, tiny_teacher, validation, max_drop=20.0, delta=0.1)
    assert isinstance(cascade.model, CascadeModel) and cascade.manifest.format == "cascade"
    step = cascade.manifest.recipe[-1]
    assert step["stage"] == "cascade" and step["config"]["calibration"]["n"] == 120
    assert step["config"]["calibration"]["drop_bound"] <= 20.0
    res = measure_cascade(cascade, test, {"teacher": tiny_teacher}, latency_texts=20)
    c, t = res[cascade.manifest.name], res["teacher"]
    assert c.n == t.n == 80 and c.latency_n == 20
    assert t.escalation_rate is None and c.escalation_rate is not None and 0 <= c.escalation_rate <= 1
    assert 0 < c.p50_ms <= c.p95_ms and c.mean_ms > 0
    # the measured accuracy is the cascade's own: recompute it by the rule
    enc = tiny_teacher.encode(test.texts)
    s, g = small.forward(enc), tiny_teacher.forward(enc)
    unsure = torch.softmax(s, -1).amax(-1) < cascade.model.threshold
    pred = torch.where(unsure, g.argmax(-1), s.argmax(-1))
    assert c.accuracy == pytest.approx(100 * float((pred == torch.tensor(test.labels)).float().mean()), abs=1.3)
    assert c.escalation_rate == pytest.approx(float(unsure.float().mean()), abs=0.03)
    folder = save_model(cascade, tmp_path / "c")
    assert load_model(tmp_path / "c").manifest.fingerprint == folder.manifest.fingerprint


def test_the_search_cascade_is_saved_and_measured_like_a_variant(
        tiny_teacher: LoadedModel, make_classifier: Callable[..., LoadedModel], tokenizer: object, tmp_path: Path,
        make_data: Callable[..., TextDataset]) -> None:
    from infopt.evaluate import BenchConfig, EvalSpec, measure_variant

    test = make_data(60, seed=6)
    spec = EvalSpec("classification", test.texts, test.labels, speed_texts=test.texts[:8])
    bench = BenchConfig(threads=1, isolate=False)

    def measure(path: Path) -> VariantResult:
        return measure_variant(path, spec, bench)

    results = {}
    for name, model in (("baseline", tiny_teacher),
                        ("small", make_classifier(tokenizer, layers=1, seed=3, name="small"))):
        save_model(model, tmp_path / "variants" / name)
        results[name] = measure(tmp_path / "variants" / name)
        results[name].path, results[name].recipe = f"variants/{name}", "" if name == "baseline" else name
    out = cascade_variant(tmp_path, results["small"], results["baseline"], make_data(120, seed=5), 20.0, measure)
    assert out.method == "cascade" and out.path == "variants/cascade-small-then-baseline"
    assert isinstance(load_model(tmp_path / out.path).model, CascadeModel)
    assert out.size_mb == pytest.approx(results["small"].size_mb + results["baseline"].size_mb, rel=0.05)
    assert "validation rows" in out.notes[-1] and "%" in out.notes[-1]
    assert out.quality["accuracy"] >= 0 and out.speed.p50_ms > 0


def test_the_search_early_exit_model_is_saved_and_measured_like_a_variant(
        tiny_teacher: LoadedModel, tmp_path: Path, make_data: Callable[..., TextDataset]) -> None:
    from infopt.compress.distill._early_exit import EarlyExitClassifier
    from infopt.evaluate import BenchConfig, EvalSpec, measure_variant

    test = make_data(60, seed=6)
    spec = EvalSpec("classification", test.texts, test.labels, speed_texts=test.texts[:8])

    def measure(path: Path) -> VariantResult:
        return measure_variant(path, spec, BenchConfig(threads=1, isolate=False))

    out = early_exit_variant(tmp_path, tiny_teacher, make_data(96, seed=0), make_data(200, seed=9), 20.0, measure)
    back = load_model(tmp_path / out.path)
    assert out.path == "variants/early-exit" and isinstance(back.model, EarlyExitClassifier)
    step = back.manifest.recipe[-1]
    assert step["stage"] == "early-exit" and step["config"]["validation"]["n"] == 200
    assert back.model.threshold == step["config"]["threshold"] <= 1.0  # a threshold passed: some rows exit early
    assert "exit early" in out.notes[-1] and out.speed.p50_ms > 0
    # the backbone is the baseline's, unchanged: with no exit taken it answers as the baseline does
    back.model.threshold = 1.0 + 1e-6
    torch.testing.assert_close(back.predict(test.texts[:8]), tiny_teacher.predict(test.texts[:8]))
    with pytest.raises(UserError, match="No early-exit threshold"):
        early_exit_variant(tmp_path / "strict", tiny_teacher, make_data(96, seed=0), make_data(30, seed=9), 1.0,
                           measure)


def test_impossible_bound_is_a_clear_error(tiny_teacher: LoadedModel, make_classifier: Callable[..., LoadedModel],
                                           tokenizer: object, make_data: Callable[..., TextDataset]) -> None:
    small = make_classifier(tokenizer, layers=1, seed=3, name="small")
    with pytest.raises(UserError, match="No cascade threshold") as err:
        build_cascade(small, tiny_teacher, make_data(40, seed=5), max_drop=0.5)  # CP(0 of 40) is 5.6 points
    assert "validation" in err.value.fix


def test_interleaved_latencies(tiny_teacher: LoadedModel) -> None:
    lat = interleaved_latencies({"a": tiny_teacher, "b": tiny_teacher}, ["a film", "a dull film", "fun"], warmup=1)
    assert set(lat) == {"a", "b"} and all(len(v) == 3 and min(v) > 0 for v in lat.values())


def test_validation_split_is_disjoint_from_the_test_split(tiny_teacher: LoadedModel, reviews_csv: Path) -> None:
    from infopt.optimize import plan_evaluation

    config = DataConfig(str(reviews_csv), text_column="review", label_column="sentiment")
    teacher = LoadedModel(tiny_teacher.model, tiny_teacher.tokenizer, tiny_teacher.manifest)
    val = validation_split(teacher, config)
    plan = plan_evaluation(teacher, config)
    assert len(val) == 4 and len(plan.spec.texts) == 4 and set(val.labels) == {0, 1}


def test_early_exit_threshold_by_the_same_rule(tiny_teacher: LoadedModel, tmp_path: Path,
                                               make_data: Callable[..., TextDataset]) -> None:
    reviews = make_data(96, seed=0)
    config = DistillConfig(scheme="self", train=FinetuneConfig(epochs=1, batch_size=16, lr=1e-3, max_length=16),
                           early_exit=EarlyExitConfig(head_epochs=20, head_lr=5e-3))
    early = distill(tiny_teacher, None, Splits(reviews, reviews, reviews), config)
    model, choice = calibrate_early_exit(early, make_data(200, seed=9), max_drop=5.0, delta=0.1)
    assert choice.passed and choice.drop_bound <= 5.0 and choice.n == 200
    assert model.model.threshold == choice.threshold
    assert model.manifest.recipe[-1]["config"]["threshold"] == choice.threshold
    saved = save_model(model, tmp_path / "ee")
    back = load_model(tmp_path / "ee")
    assert back.manifest.format == "early-exit" and back.model.threshold == choice.threshold
    torch.testing.assert_close(back.predict(reviews.texts[:8]), saved.predict(reviews.texts[:8]))
    _, strict = calibrate_early_exit(early, make_data(30, seed=9), max_drop=1.0)  # CP(0 of 30) = 7.4 points
    assert not strict.passed and strict.escalation_rate == 1.0
    with pytest.raises(UserError, match="not an early-exit"):
        calibrate_early_exit(tiny_teacher, reviews, max_drop=1.0)


@pytest.mark.slow
def test_real_teacher_cascade(tmp_path: Path) -> None:
    """minilm-l6-rt with its onnx-int8 variant first: few escalations, accuracy close to the teacher's."""
    from infopt.compress.quantize import quantize
    from infopt.optimize import plan_evaluation

    teacher = load_model("minilm-l6-rt")
    small = quantize(teacher, "onnx-int8")
    validation = validation_split(teacher)
    cascade = build_cascade(small, teacher, validation.subset(range(400)), max_drop=2.0)
    choice = cascade.manifest.recipe[-1]["config"]["calibration"]
    assert choice["passed"] and choice["drop_bound"] <= 2.0 and choice["escalation_rate"] < 0.5
    plan = plan_evaluation(teacher, None, eval_limit=200)
    test = TextDataset("test", plan.spec.texts, plan.spec.labels, list(teacher.manifest.labels))
    save_model(cascade, tmp_path / "c")
    res = measure_cascade(load_model(tmp_path / "c"), test, {"teacher": teacher}, latency_texts=20)
    c, t = res[cascade.manifest.name], res["teacher"]
    assert c.escalation_rate is not None and c.escalation_rate < 0.5
    assert c.accuracy >= t.accuracy - 2.0
