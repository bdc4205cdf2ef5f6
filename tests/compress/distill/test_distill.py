"""distill() end to end on tiny models: each knowledge kind and scheme, multi-teacher, progressive, bad input."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch

from infopt.compress.distill import (
    DistillConfig,
    EarlyExitConfig,
    StudentConfig,
    distill,
    make_student,
    teacher_outputs,
)
from infopt.data import DataConfig, TextDataset, load_dataset, split_dataset
from infopt.errors import InfoptError
from infopt.models import LoadedModel, load_model, save_model
from infopt.train import FinetuneConfig

FAST = DistillConfig(train=FinetuneConfig(epochs=4, batch_size=16, lr=1e-3, max_length=16, seed=0))
SLOW_LEARNER = DistillConfig(train=FinetuneConfig(epochs=12, batch_size=16, lr=3e-3, max_length=16, seed=0))
"""A random-init student needs a longer, hotter schedule than one cut from the teacher."""


def _kl_to_teacher(student: LoadedModel, teacher: LoadedModel, texts: list[str]) -> float:
    s = student.predict(texts, max_length=16)
    t = teacher.predict(texts, max_length=16)
    kl = torch.nn.functional.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="batchmean")
    return kl.item()


def _accuracy(model: LoadedModel, data: TextDataset) -> float:
    pred = model.predict(data.texts, max_length=16).argmax(-1)
    return (pred == torch.tensor(data.labels)).float().mean().item()


def test_teacher_is_good_enough_to_teach(tiny_teacher: LoadedModel, reviews: TextDataset) -> None:
    assert _accuracy(tiny_teacher, reviews) > 0.9


@pytest.mark.parametrize(
    "kinds",
    [
        {"alpha": 0.0},
        {},
        {"feature": 1.0},
        {"relation": 1.0},
        {"attention": 1.0},
        {"feature": 1.0, "relation": 1.0, "attention": 1.0},
        {"scheme": "online"},
        {"scheme": "online", "feature": 1.0, "relation": 1.0, "attention": 1.0},
    ],
)
def test_every_kind_and_scheme_trains_a_student(
    tiny_teacher: LoadedModel, reviews: TextDataset, kinds: dict[str, Any]
) -> None:
    before = {k: v.clone() for k, v in tiny_teacher.model.state_dict().items()}
    config = dataclasses.replace(FAST, **kinds)
    student = distill(tiny_teacher, StudentConfig(num_layers=2), reviews, config)
    assert student.model.config.num_hidden_layers == 2
    assert _accuracy(student, reviews) > 0.8
    assert student.manifest.recipe[-1]["stage"] == "distill"
    assert student.manifest.method == ("distill:hard-labels" if kinds == {"alpha": 0.0} else
                                       f"distill:{config.scheme}")
    for k, v in tiny_teacher.model.state_dict().items():  # the teacher is never modified (online trains a copy)
        torch.testing.assert_close(v, before[k])
    assert student.model.config._attn_implementation != "eager"


def test_soft_targets_pull_the_student_towards_the_teacher(tiny_teacher: LoadedModel, reviews: TextDataset) -> None:
    start = make_student(tiny_teacher, StudentConfig(init="random", num_layers=1))
    kl_before = _kl_to_teacher(start, tiny_teacher, reviews.texts)
    student = distill(tiny_teacher, start, reviews, dataclasses.replace(SLOW_LEARNER, alpha=1.0, temperature=2.0))
    assert _kl_to_teacher(student, tiny_teacher, reviews.texts) < 0.5 * kl_before


def test_hard_label_training_never_runs_the_teacher(
    tiny_teacher: LoadedModel, reviews: TextDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    student = make_student(tiny_teacher, StudentConfig(num_layers=2))
    monkeypatch.setattr(tiny_teacher.model, "forward", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    distill(tiny_teacher, student, reviews, dataclasses.replace(FAST, alpha=0.0))


def test_second_offline_run_reuses_the_teacher_cache(
    tiny_teacher: LoadedModel, reviews: TextDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = dataclasses.replace(FAST, feature=1.0, attention=1.0, relation=1.0)
    first = distill(tiny_teacher, StudentConfig(num_layers=2), reviews, config)
    fresh = make_student(tiny_teacher, StudentConfig(num_layers=2))  # before the patch: cutting copies the teacher

    def boom(*_: Any, **__: Any) -> None:
        raise AssertionError("the teacher ran on the second run")

    monkeypatch.setattr(tiny_teacher.model, "forward", boom)
    second = distill(tiny_teacher, fresh, reviews, config)
    for (k, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)  # same seed, same cached targets: the same student


def test_max_steps_sets_the_budget(tiny_teacher: LoadedModel, reviews: TextDataset) -> None:
    student = distill(tiny_teacher, StudentConfig(num_layers=1), reviews, dataclasses.replace(FAST, max_steps=3))
    recipe = student.manifest.recipe[-1]["config"]
    assert recipe["epochs"] == pytest.approx(3 * 16 / len(reviews))


def test_layer_map_defaults_to_the_layers_the_student_was_cut_from(
    tiny_teacher: LoadedModel, reviews: TextDataset
) -> None:
    student = distill(tiny_teacher, StudentConfig(layers=(0, 3)), reviews, dataclasses.replace(FAST, feature=1.0))
    assert student.manifest.recipe[-1]["config"]["layer_map"] == [1, 4]
    rnd = distill(tiny_teacher, StudentConfig(init="random", num_layers=2), reviews,
                  dataclasses.replace(FAST, feature=1.0, max_steps=2))
    assert rnd.manifest.recipe[-1]["config"]["layer_map"] == [2, 4]
    with pytest.raises(InfoptError, match="Layer map"):
        distill(tiny_teacher, StudentConfig(num_layers=2), reviews, dataclasses.replace(FAST, layer_map=(1, 9)))


def test_multi_teacher_with_a_different_tokenizer(
    tiny_teacher: LoadedModel, reviews: TextDataset, foreign_tok: Any, make_classifier: Callable[..., LoadedModel],
    train: Callable[..., LoadedModel],
) -> None:
    other = train(make_classifier(foreign_tok, layers=1, seed=1, labels=("positive", "negative"), name="foreign"),
                  dataclasses.replace(reviews, labels=[1 - y for y in reviews.labels],
                                      label_names=["positive", "negative"]))
    assert len(foreign_tok("great film")["input_ids"]) != len(tiny_teacher.tokenizer("great film")["input_ids"]) or \
        foreign_tok("great film")["input_ids"] != tiny_teacher.tokenizer("great film")["input_ids"]
    config = dataclasses.replace(FAST, teacher_weights=(0.6, 0.4))
    student = distill([tiny_teacher, other], StudentConfig(num_layers=2), reviews, config)
    assert _accuracy(student, reviews) > 0.8
    recipe = student.manifest.recipe[-1]["config"]
    assert recipe["teachers"] == ["tiny-teacher", "foreign"] and recipe["teacher_weights"] == [0.6, 0.4]
    with pytest.raises(InfoptError, match="teacher weights"):
        distill([tiny_teacher, other], None, reviews, dataclasses.replace(FAST, teacher_weights=(1.0,)))
    with pytest.raises(InfoptError, match="Online"):
        distill([tiny_teacher, other], None, reviews, dataclasses.replace(FAST, scheme="online"))


def test_progressive_chain_teacher_assistant_student(tiny_teacher: LoadedModel, reviews: TextDataset) -> None:
    student = distill(tiny_teacher, [StudentConfig(num_layers=3), StudentConfig(num_layers=2)], reviews, FAST)
    assert student.model.config.num_hidden_layers == 2
    assert student.manifest.name == "tiny-teacher-l3-l2"
    stages = [s for s in student.manifest.recipe if s["stage"] == "distill"]  # the whole history is kept
    assert [s["config"]["teachers"] for s in stages] == [["tiny-teacher"], ["tiny-teacher-l3"]]
    assert _accuracy(student, reviews) > 0.8


def test_student_from_a_saved_folder_round_trips(
    tiny_teacher: LoadedModel, reviews: TextDataset, tmp_path: Any
) -> None:
    student = distill(tiny_teacher, StudentConfig(num_layers=1), reviews, dataclasses.replace(FAST, max_steps=2))
    save_model(student, tmp_path / "s")
    back = load_model(tmp_path / "s")
    assert back.manifest.method == "distill:offline" and back.manifest.labels == ["negative", "positive"]
    torch.testing.assert_close(back.predict(["great film"]), student.predict(["great film"]))


def test_label_order_is_aligned_by_name(
    tiny_teacher: LoadedModel, reviews: TextDataset, make_classifier: Callable[..., LoadedModel], tokenizer: Any
) -> None:
    flipped_student = make_classifier(tokenizer, layers=1, labels=("positive", "negative"), name="flipped")
    student = distill(tiny_teacher, flipped_student, reviews, dataclasses.replace(SLOW_LEARNER, alpha=0.5))
    pred = student.predict(reviews.texts, max_length=16).argmax(-1)
    assert (pred == 1 - torch.tensor(reviews.labels)).float().mean() > 0.8  # column 0 is "positive" here


# --- bad input -----------------------------------------------------------------------------------------------------


def test_different_label_sets_are_a_clear_error(
    tiny_teacher: LoadedModel, reviews: TextDataset, make_classifier: Callable[..., LoadedModel], tokenizer: Any
) -> None:
    other = make_classifier(tokenizer, layers=1, labels=("rotten", "fresh"))
    with pytest.raises(InfoptError, match="different label sets"):
        distill(tiny_teacher, other, reviews, FAST)
    three = make_classifier(tokenizer, layers=1, labels=("a", "b", "c"))
    with pytest.raises(InfoptError, match="different label sets"):
        distill(tiny_teacher, three, reviews, FAST)
    with pytest.raises(InfoptError, match="do not match the data's"):
        distill(tiny_teacher, None, dataclasses.replace(reviews, label_names=["bad", "good"]), FAST)


@pytest.mark.parametrize("bad", [{"alpha": 1.2}, {"alpha": -0.5}, {"temperature": 0.0}, {"temperature": -2.0},
                                 {"feature": -1.0}, {"scheme": "sideways"}, {"max_steps": 0}])
def test_bad_settings_are_clear_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(InfoptError):
        DistillConfig(**bad)


def test_empty_data_is_a_clear_error(tiny_teacher: LoadedModel) -> None:
    empty = TextDataset("empty", [], [], ["negative", "positive"])
    for config in (FAST, dataclasses.replace(FAST, scheme="self"), dataclasses.replace(FAST, alpha=0.0)):
        with pytest.raises(InfoptError, match="empty"):
            distill(tiny_teacher, None if config.scheme == "self" else StudentConfig(num_layers=1), empty, config)


def test_attention_transfer_needs_the_same_tokenizer(
    tiny_teacher: LoadedModel, reviews: TextDataset, foreign_tok: Any, make_classifier: Callable[..., LoadedModel]
) -> None:
    foreign_student = make_classifier(foreign_tok, layers=1)
    with pytest.raises(InfoptError, match="same tokens"):
        distill(tiny_teacher, foreign_student, reviews, dataclasses.replace(FAST, attention=1.0))
    student = distill(tiny_teacher, foreign_student, reviews, dataclasses.replace(FAST, feature=1.0, max_steps=2))
    assert student.manifest.method == "distill:offline"  # pooled features need no shared tokenizer


def test_a_causal_teacher_with_a_classifier_student_is_a_clear_error(
    tiny_llama: LoadedModel, tiny_bert_classifier: LoadedModel, reviews: TextDataset
) -> None:
    with pytest.raises(InfoptError, match=r"not a PyTorch causal LM|vocabularies"):
        distill(tiny_llama, tiny_bert_classifier, reviews.texts, FAST)
    with pytest.raises(InfoptError, match="not a classifier"):
        distill(tiny_bert_classifier, make_student(tiny_llama), reviews, FAST)


def test_teacher_outputs_cache_is_shared_by_distill(tiny_teacher: LoadedModel, reviews: TextDataset) -> None:
    teacher_outputs(tiny_teacher, reviews.texts, 16)
    assert not teacher_outputs(tiny_teacher, reviews.texts, 16).ran_teacher


# --- on the real bundled models (slow) ---


TINY = DistillConfig(max_steps=3, train=FinetuneConfig(epochs=1, batch_size=8, lr=1e-4, max_length=32, seed=0))


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    teacher = load_model("minilm-l6-rt")
    splits = split_dataset(load_dataset(DataConfig("rotten-tomatoes", limit=400)), seed=0)
    return teacher, splits


@pytest.mark.slow
def test_three_layer_student_of_the_real_teacher(setup) -> None:  # type: ignore[no-untyped-def]
    teacher, splits = setup
    student = distill(teacher, StudentConfig(), splits.train, TINY)
    assert student.model.config.num_hidden_layers == 3
    assert student.manifest.labels == teacher.manifest.labels == ["rotten", "fresh"]
    assert student.manifest.recipe[-1]["config"]["layer_map"] == [1, 3, 6]
    assert any(s["stage"] == "finetune" for s in student.manifest.recipe)  # the teacher's history is kept
    assert not teacher_outputs(teacher, splits.train.texts, 32).ran_teacher  # cached by the run above


@pytest.mark.slow
def test_minilm_l3_student_and_feature_kinds(setup) -> None:  # type: ignore[no-untyped-def]
    teacher, splits = setup
    config = DistillConfig(feature=1.0, relation=1.0, attention=1.0, max_steps=2, train=TINY.train)
    student = distill(teacher, StudentConfig(init="pretrained", pretrained="minilm-l3"), splits.train, config)
    assert student.model.config.num_hidden_layers == 3
    assert student.predict(["a charming film"]).shape == (1, 2)


@pytest.mark.slow
def test_early_exit_of_the_real_teacher(setup) -> None:  # type: ignore[no-untyped-def]
    teacher, splits = setup
    config = DistillConfig(scheme="self", train=TINY.train, early_exit=EarlyExitConfig(head_epochs=1))
    early = distill(teacher, None, splits, config)
    assert early.model.exit_layers == (1, 2, 3, 4, 5)
    assert early.predict(splits.test.texts[:4]).shape == (4, 2)
