"""BenchConfig, measure and measure_variant on tiny saved models (in process and in a fresh process)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from infopt.data import TextDataset
from infopt.errors import InfoptError
from infopt.evaluate import (
    BenchConfig,
    EvalSpec,
    RunResult,
    VariantResult,
    classification_ci,
    classification_quality,
    classify,
    compare,
    embed,
    measure,
    measure_variant,
)
from infopt.models import LoadedModel, load_model, save_model, weight_files

TEXTS = [
    "a wonderful film",
    "a dreadful film",
    "the acting was fine",
    "I would not watch it again",
    "best movie of the year",
    "boring and far too long",
]
LABELS = [1, 0, 1, 0, 1, 0]


def _weights_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in weight_files(folder)) / 1e6


@pytest.fixture
def saved_classifier(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> Path:
    save_model(tiny_bert_classifier, tmp_path / "clf")
    return tmp_path / "clf"


# --- BenchConfig ---


def test_bench_config_defaults() -> None:
    cfg = BenchConfig()
    assert cfg.threads is None and cfg.batch_size == 32 and cfg.isolate


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"threads": 0}, "threads=0"), ({"threads": -2}, "threads=-2"), ({"batch_size": 0}, "batch_size=0")],
)
def test_bench_config_validation(kwargs: dict[str, int], word: str) -> None:
    with pytest.raises(InfoptError) as info:
        BenchConfig(**kwargs)  # type: ignore[arg-type]
    assert word in info.value.problem and info.value.fix


def test_bench_config_accepts_valid_values() -> None:
    assert BenchConfig(threads=1, batch_size=1, isolate=False).threads == 1


# --- EvalSpec ---


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_eval_spec_rejects_a_bad_allowed_drop(value: float) -> None:
    with pytest.raises(InfoptError, match="reject_below"):
        EvalSpec("classification", TEXTS, LABELS, reject_below=value)


def test_eval_spec_checks_baseline_predictions() -> None:
    with pytest.raises(ValueError, match="5 baseline predictions for 6 texts"):
        EvalSpec("classification", TEXTS, LABELS, baseline_predictions=LABELS[:5])
    with pytest.raises(ValueError, match="classification"):
        EvalSpec("embedding", TEXTS, baseline_predictions=LABELS)
    assert EvalSpec("classification", TEXTS, LABELS, baseline_predictions=LABELS, reject_below=0).reject_below == 0


# --- in process ---


def test_measure_classifier_in_process(saved_classifier: Path) -> None:
    spec = EvalSpec("classification", TEXTS, LABELS, speed_texts=TEXTS[:2])
    result = measure_variant(saved_classifier, spec, BenchConfig(threads=1, batch_size=4, isolate=False))
    loaded = load_model(saved_classifier)
    assert isinstance(result, VariantResult)
    assert result.quality == classification_quality(loaded, TextDataset("t", TEXTS, LABELS))
    assert result.name == "tiny-bert-classifier" and result.task == "classification" and result.method == "original"
    assert result.size_mb == pytest.approx(_weights_mb(saved_classifier))
    assert result.size_mb > 0
    assert result.params == loaded.num_parameters() > 0
    assert result.fingerprint == loaded.manifest.fingerprint != ""
    assert result.path == str(saved_classifier)
    assert result.peak_rss_mb > 0
    assert result.speed.batch_size == 4 and result.speed.threads == 1
    assert 0 < result.speed.p50_ms <= result.speed.p99_ms


def test_measure_classifier_keeps_predictions_and_intervals(tiny_bert_classifier: LoadedModel) -> None:
    pred = classify(tiny_bert_classifier, TEXTS)
    result = measure(tiny_bert_classifier, EvalSpec("classification", TEXTS, LABELS), BenchConfig(batch_size=2))
    assert result.predictions == pred
    assert result.n_eval == len(TEXTS)
    assert result.quality_ci == classification_ci(pred, LABELS)
    assert result.flips is None and result.delta_ci is None  # no baseline to compare with
    assert len(result.speed.samples_ms) >= 30 and result.notes == []
    assert result.batch_flips == [0, len(TEXTS)]  # float: the same answer alone as in a batch


def test_measure_against_the_baseline(tiny_bert_classifier: LoadedModel) -> None:
    pred = classify(tiny_bert_classifier, TEXTS)
    same = measure(tiny_bert_classifier, EvalSpec("classification", TEXTS, LABELS, baseline_predictions=pred),
                   BenchConfig(batch_size=2))
    assert same.flips == 0 and same.delta_ci == [0.0, 0.0]
    other = [1 - p for p in pred]
    base = other[:3] + pred[3:]
    result = measure(tiny_bert_classifier, EvalSpec("classification", TEXTS, LABELS, baseline_predictions=base),
                     BenchConfig(batch_size=2))
    assert result.flips == 3
    assert result.delta_ci == compare(pred, base, LABELS).delta_ci
    assert math.isfinite(result.speed.p50_ms)  # no reject_below: always timed


def test_measure_rejects_early_a_surely_worse_variant(tiny_bert_classifier: LoadedModel) -> None:
    pred = classify(tiny_bert_classifier, TEXTS)
    labels = [1 - p for p in pred]  # the variant gets every example wrong, the baseline every one right
    spec = EvalSpec("classification", TEXTS, labels, baseline_predictions=labels, reject_below=1.0)
    result = measure(tiny_bert_classifier, spec, BenchConfig(batch_size=2))
    assert result.quality["accuracy"] == 0.0 and result.delta_ci == [-100.0, -100.0] and result.flips == 6
    assert math.isnan(result.speed.p50_ms) and math.isnan(result.speed.throughput) and result.speed.samples_ms == []
    assert result.speed.batch_size == 2
    assert len(result.notes) == 1 and result.notes[0].startswith("rejected early: accuracy -100.00 points")
    assert result.n_eval == 6 and result.predictions == pred  # quality is still reported


def test_measure_keeps_timing_a_variant_that_may_meet_the_bound(tiny_bert_classifier: LoadedModel) -> None:
    pred = classify(tiny_bert_classifier, TEXTS)
    base = [1 - pred[0], *pred[1:]]
    spec = EvalSpec("classification", TEXTS, pred, baseline_predictions=base, reject_below=1.0)
    result = measure(tiny_bert_classifier, spec, BenchConfig(batch_size=2))
    assert result.delta_ci is not None and result.delta_ci[1] > 0  # the variant is no worse
    assert math.isfinite(result.speed.p50_ms) and result.notes == []


def test_measure_without_path_has_no_size(tiny_bert_classifier: LoadedModel) -> None:
    spec = EvalSpec("classification", TEXTS, LABELS)
    result = measure(tiny_bert_classifier, spec, BenchConfig(batch_size=2))
    assert result.size_mb == 0.0 and result.path == ""
    assert result.speed.threads == torch.get_num_threads()


def test_measure_embedder(tiny_bert_embedder: LoadedModel, tmp_path: Path) -> None:
    save_model(tiny_bert_embedder, tmp_path / "emb")
    reference = embed(tiny_bert_embedder, TEXTS)
    spec = EvalSpec("embedding", TEXTS, reference=reference)
    result = measure_variant(tmp_path / "emb", spec, BenchConfig(batch_size=4, isolate=False))
    assert result.task == "embedding"
    assert result.quality["cosine_to_parent"] == pytest.approx(1.0, abs=1e-5)
    assert result.quality["retrieval_agreement"] == 100.0
    assert result.n_eval == len(TEXTS) and set(result.quality_ci) == {"cosine_to_parent", "retrieval_agreement"}
    assert result.predictions == [] and result.flips is None
    assert result.size_mb == pytest.approx(_weights_mb(tmp_path / "emb"))


def test_measure_causal_lm(tiny_llama: LoadedModel) -> None:
    spec = EvalSpec("causal-lm", TEXTS, speed_texts=TEXTS[:2], prompt="Once upon a time", max_tokens=20)
    result = measure(tiny_llama, spec, BenchConfig(batch_size=2))
    assert result.quality["tokens"] == 19 == result.n_eval
    low, high = result.quality_ci["perplexity"]
    assert low <= result.quality["perplexity"] <= high
    assert math.isfinite(result.quality["perplexity"]) and result.quality["perplexity"] > 1
    assert result.speed.decode_tokens_per_s is not None and result.speed.decode_tokens_per_s > 0


# --- in a fresh process ---


def test_measure_variant_isolated(saved_classifier: Path) -> None:
    spec = EvalSpec("classification", TEXTS, LABELS, speed_texts=TEXTS)
    result = measure_variant(saved_classifier, spec, BenchConfig(threads=1, batch_size=4, isolate=True))
    loaded = load_model(saved_classifier)
    assert result.size_mb == pytest.approx(_weights_mb(saved_classifier))
    assert result.peak_rss_mb > 50  # a process that imported torch and loaded a model
    assert result.quality == classification_quality(loaded, TextDataset("t", TEXTS, LABELS))
    assert result.params == loaded.num_parameters()
    assert result.fingerprint == loaded.manifest.fingerprint
    assert result.speed.threads == 1 and result.speed.batch_size == 4
    assert result.speed.p50_ms > 0 and result.speed.throughput > 0


def test_measure_variant_isolated_rejects_early_and_round_trips(saved_classifier: Path) -> None:
    pred = classify(load_model(saved_classifier), TEXTS)
    labels = [1 - p for p in pred]
    spec = EvalSpec("classification", TEXTS, labels, speed_texts=TEXTS, baseline_predictions=labels, reject_below=0.5)
    result = measure_variant(saved_classifier, spec, BenchConfig(threads=1, batch_size=4, isolate=True))
    assert result.predictions == pred and result.flips == 6 and result.n_eval == 6
    assert math.isnan(result.speed.p50_ms) and result.notes[0].startswith("rejected early:")
    assert result.size_mb > 0 and result.peak_rss_mb > 50
    run = RunResult("m", "classification", "d", [result], {})
    back = RunResult.from_json(run.to_json()).variants[0]
    assert back.predictions == pred and back.delta_ci == result.delta_ci and back.quality_ci == result.quality_ci
    assert math.isnan(back.speed.p50_ms)
