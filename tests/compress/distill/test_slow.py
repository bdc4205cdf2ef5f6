"""The real bundled teacher (MiniLM-L6-RT) with a very small budget: every path runs on the real models."""

from __future__ import annotations

import pytest
import torch

from infopt.compress.distill import DistillConfig, EarlyExitConfig, StudentConfig, distill, teacher_outputs
from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.models import load_model
from infopt.train import FinetuneConfig

pytestmark = pytest.mark.slow

TINY = DistillConfig(max_steps=3, train=FinetuneConfig(epochs=1, batch_size=8, lr=1e-4, max_length=32, seed=0))


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    teacher = load_model("minilm-l6-rt")
    splits = split_dataset(load_dataset(DataConfig("rotten-tomatoes", limit=400)), seed=0)
    return teacher, splits


def test_three_layer_student_of_the_real_teacher(setup) -> None:  # type: ignore[no-untyped-def]
    teacher, splits = setup
    student = distill(teacher, StudentConfig(), splits.train, TINY)
    assert student.model.config.num_hidden_layers == 3
    assert student.manifest.labels == teacher.manifest.labels == ["rotten", "fresh"]
    assert student.manifest.recipe[-1]["config"]["layer_map"] == [1, 3, 6]
    assert any(s["stage"] == "finetune" for s in student.manifest.recipe)  # the teacher's history is kept
    assert not teacher_outputs(teacher, splits.train.texts, 32).ran_teacher  # cached by the run above


def test_minilm_l3_student_and_feature_kinds(setup) -> None:  # type: ignore[no-untyped-def]
    teacher, splits = setup
    config = DistillConfig(feature=1.0, relation=1.0, attention=1.0, max_steps=2, train=TINY.train)
    student = distill(teacher, StudentConfig(init="pretrained", pretrained="minilm-l3"), splits.train, config)
    assert student.model.config.num_hidden_layers == 3
    assert student.predict(["a charming film"]).shape == (1, 2)


def test_early_exit_of_the_real_teacher(setup) -> None:  # type: ignore[no-untyped-def]
    teacher, splits = setup
    config = DistillConfig(scheme="self", train=TINY.train, early_exit=EarlyExitConfig(head_epochs=1))
    early = distill(teacher, None, splits, config)
    assert early.model.exit_layers == (1, 2, 3, 4, 5)
    assert early.predict(splits.test.texts[:4]).shape == (4, 2)
