"""The data plan of a run: splits, label alignment, calibration texts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerBase

from infopt.data import DataConfig, TextDataset
from infopt.errors import InfoptError
from infopt.models import LoadedModel
from infopt.optimize import plan_evaluation


def test_plan_for_a_classifier_aligns_labels_by_name(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "flipped.csv"
    path.write_text("t,y\n" + "".join(f"text {i},{'positive' if i % 2 else 'negative'}\n" for i in range(40)))
    plan = plan_evaluation(tiny_bert_classifier, DataConfig(str(path), "t", "y"))
    for text, label in zip(plan.spec.texts, plan.spec.labels, strict=True):
        assert label == int(text.split()[1]) % 2  # model order is negative=0, positive=1
    assert plan.metric == "accuracy" and plan.calibration


def test_plan_rejects_data_with_other_labels(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "three.csv"
    path.write_text("t,y\n" + "".join(f"text {i},{'abc'[i % 3]}\n" for i in range(60)))
    with pytest.raises(InfoptError, match="labels"):
        plan_evaluation(tiny_bert_classifier, DataConfig(str(path), "t", "y"))


def test_plan_for_a_classifier_without_data_asks_for_it(tiny_bert_classifier: LoadedModel) -> None:
    with pytest.raises(InfoptError, match="--data"):
        plan_evaluation(tiny_bert_classifier, None)


# --- notes, and a separate evaluation file (--eval-data) ---


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("t,y\n" + "".join(f"{t},{y}\n" for t, y in rows))
    return path


def _train_csv(tmp_path: Path, names: tuple[str, ...] = ("negative", "positive")) -> DataConfig:
    """60 rows, 20 or 30 of each class: split 48 / 6 / 6."""
    rows = [(f"train text {i}", names[i % len(names)]) for i in range(60)]
    return DataConfig(str(_csv(tmp_path / "train.csv", rows)), "t", "y")


def test_plan_says_how_many_examples_score_accuracy(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    plan = plan_evaluation(tiny_bert_classifier, _train_csv(tmp_path))
    assert len(plan.spec.texts) == 6  # 10% of 60
    assert plan.notes == ["accuracy is scored on 6 examples of the test split: one example is 16.7 points of 6"]


def test_plan_with_an_eval_file_scores_all_of_it(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    rows = [(f"eval text {i}", "negative" if i % 3 else "positive") for i in range(37)]
    eval_data = DataConfig(str(_csv(tmp_path / "eval.csv", rows)), "t", "y")
    plan = plan_evaluation(tiny_bert_classifier, _train_csv(tmp_path), eval_data=eval_data)
    assert plan.spec.texts == [t for t, _ in rows]  # the whole file, in its order
    assert plan.spec.labels == [0 if i % 3 else 1 for i in range(37)]  # the model's order: negative=0, positive=1
    assert plan.data_name == "eval"
    assert plan.train is not None and len(plan.train) == 48 and all(t.startswith("train") for t in plan.train.texts)
    assert plan.calibration and all(t.startswith("train") for t in plan.calibration)
    assert plan.notes == ["accuracy is scored on 37 examples of the evaluation file: one example is 2.70 points of 37"]
    limited = plan_evaluation(tiny_bert_classifier, _train_csv(tmp_path), eval_limit=10, eval_data=eval_data)
    assert limited.spec.texts == plan.spec.texts[:10]


def test_plan_eval_file_with_some_of_the_classes(
    make_classifier: Callable[..., LoadedModel], tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    names = ("positive", "neutral", "negative")
    model = make_classifier(tokenizer, labels=names)
    rows = [(f"e {i}", ("negative", "positive")[i % 2]) for i in range(12)]  # no neutral; file order neg, pos
    eval_data = DataConfig(str(_csv(tmp_path / "two.csv", rows)), "t", "y")
    plan = plan_evaluation(model, _train_csv(tmp_path, names), eval_data=eval_data)
    assert plan.spec.labels == [2, 0] * 6  # the model's indices: negative=2, positive=0


def test_plan_eval_file_with_unknown_labels(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    rows = [(f"e {i}", ("positive", "neutral")[i % 2]) for i in range(12)]
    eval_data = DataConfig(str(_csv(tmp_path / "bad.csv", rows)), "t", "y")
    with pytest.raises(InfoptError, match="neutral"):
        plan_evaluation(tiny_bert_classifier, _train_csv(tmp_path), eval_data=eval_data)


def test_plan_eval_file_for_a_model_without_names(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    manifest = dataclasses.replace(tiny_bert_classifier.manifest, labels=["LABEL_0", "LABEL_1", "LABEL_2"])
    model = LoadedModel(tiny_bert_classifier.model, tiny_bert_classifier.tokenizer, manifest)
    rows = [(f"e {i}", ("c", "a")[i % 2]) for i in range(12)]  # the file's own order would be a=0, c=1
    eval_data = DataConfig(str(_csv(tmp_path / "e.csv", rows)), "t", "y")
    plan = plan_evaluation(model, _train_csv(tmp_path, ("a", "b", "c")), eval_data=eval_data)
    assert plan.spec.labels == [2, 0] * 6  # the train data's order: a, b, c


def test_plan_notes_eval_texts_seen_in_training(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    train = _train_csv(tmp_path)
    rows = [(f"train text {i}", "positive" if i % 2 else "negative") for i in range(60)]  # the whole train file
    plan = plan_evaluation(tiny_bert_classifier, train, eval_data=DataConfig(str(_csv(tmp_path / "e.csv", rows)),
                                                                            "t", "y"))
    assert len(plan.notes) == 2
    assert plan.notes[1].startswith("48 of the 60 evaluation texts are also in the training split")


def test_plan_eval_file_for_an_embedder(tiny_bert_embedder: LoadedModel, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.csv"
    corpus.write_text("text\n" + "".join(f"calibration sentence {i}\n" for i in range(30)))
    held = tmp_path / "held.csv"
    held.write_text("text\n" + "".join(f"held sentence {i}\n" for i in range(700)))
    plan = plan_evaluation(tiny_bert_embedder, DataConfig(str(corpus)), eval_data=DataConfig(str(held)))
    assert plan.spec.texts == [f"held sentence {i}" for i in range(700)]  # all of it, more than the default 512
    assert plan.spec.reference is not None and plan.spec.reference.shape[0] == 700
    assert all(t.startswith("calibration") for t in plan.calibration)


def test_plan_eval_file_for_an_lm_scores_every_token(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    from infopt.data import joined_tokens

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"calibration paragraph number {i}." for i in range(20)))
    held = tmp_path / "held.csv"
    line = "a held out sentence of the evaluation file with a good many words in it, number {}\n"
    held.write_text("text\n" + "".join(line.format(i) for i in range(700)))
    plan = plan_evaluation(tiny_llama, DataConfig(str(corpus)), eval_data=DataConfig(str(held)))
    assert len(plan.spec.texts) == 700 and plan.data_name == str(held)
    everything = len(joined_tokens(tiny_llama.tokenizer, plan.spec.texts))
    assert plan.spec.max_tokens >= everything > 256 * 32  # all of it: more than the 8,192 tokens scored by default


# --- on the real teacher (slow) ---


@pytest.mark.slow
def test_eval_file_early_rejection_and_flips_on_the_real_teacher(tmp_path: Path) -> None:
    import csv
    import math

    from infopt.compress.quantize import quantize
    from infopt.data import load_dataset, split_dataset
    from infopt.evaluate import BenchConfig, measure_variant, score_classification
    from infopt.models import load_model, save_model

    test = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0).test.subset(range(200))
    path = tmp_path / "eval.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        writer.writerows([t, test.label_names[y]] for t, y in zip(test.texts, test.labels, strict=True))
    teacher = load_model("minilm-l6-rt")
    plan = plan_evaluation(teacher, None, eval_data=DataConfig(str(path), "review", "sentiment"))
    # the file sorts its names fresh, rotten; the model's order is rotten, fresh: realigned by name
    assert plan.spec.texts == test.texts and plan.spec.labels == test.labels
    assert plan.notes[0].endswith("one example is 0.50 points of 200")

    base = score_classification(teacher, TextDataset("eval", plan.spec.texts, plan.spec.labels))
    p = base.quality["accuracy"] / 100
    assert base.n_eval == 200 and p > 0.75  # measured: 86.5 [81.5, 91.0]
    low, high = base.quality_ci["accuracy"]
    assert high - low == pytest.approx(2 * 196 * math.sqrt(p * (1 - p) / 200), rel=0.2)

    save_model(quantize(teacher, "dynamic-int8"), tmp_path / "int8")
    bench = BenchConfig(threads=2, batch_size=8)
    spec = dataclasses.replace(plan.spec, speed_texts=plan.spec.texts[:8], baseline_predictions=base.predictions,
                               reject_below=1.0)
    int8 = measure_variant(tmp_path / "int8", spec, bench)  # measured: 1 flip, -0.50 [-1.50, +0.00]
    assert int8.n_eval == 200 and int8.flips is not None and int8.flips <= 10 and int8.delta_ci is not None
    assert int8.delta_ci[1] >= -1.0 and int8.notes == []
    assert math.isfinite(int8.speed.p50_ms) and len(int8.speed.samples_ms) >= 30

    perfect = dataclasses.replace(spec, baseline_predictions=plan.spec.labels)  # against a baseline that is never wrong
    rejected = measure_variant(tmp_path / "int8", perfect, bench)
    assert rejected.delta_ci is not None and rejected.delta_ci[1] < -1.0
    assert math.isnan(rejected.speed.p50_ms) and rejected.notes[0].startswith("rejected early:")
