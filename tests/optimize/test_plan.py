"""The data plan of a run: splits, label alignment, calibration texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from infopt.data import DataConfig
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
