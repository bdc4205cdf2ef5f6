"""Self-distillation into an early-exit model: exit rule, threshold choice, save / load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from infopt.compress.distill import (
    DistillConfig,
    EarlyExitClassifier,
    EarlyExitConfig,
    choose_threshold,
    distill,
    exit_logits_on,
    simulate_exits,
)
from infopt.data import Splits, TextDataset
from infopt.errors import InfoptError
from infopt.models import LoadedModel, load_model, save_model
from infopt.train import FinetuneConfig

SELF = DistillConfig(scheme="self", train=FinetuneConfig(epochs=1, batch_size=16, lr=1e-3, max_length=16, seed=0),
                     early_exit=EarlyExitConfig(head_epochs=20, head_lr=5e-3))


@pytest.fixture(scope="module")
def early(tiny_teacher: LoadedModel, reviews: TextDataset) -> LoadedModel:
    return distill(tiny_teacher, None, Splits(reviews, reviews, reviews), SELF)


def test_backbone_is_shared_and_unchanged(early: LoadedModel, tiny_teacher: LoadedModel) -> None:
    ee = early.model
    assert isinstance(ee, EarlyExitClassifier)
    assert ee.base is tiny_teacher.model and ee.exit_layers == (1, 2, 3)
    recipe = early.manifest.recipe[-1]
    assert recipe["stage"] == "early-exit" and recipe["config"]["threshold"] == ee.threshold
    assert early.manifest.method == "distill:self"


def test_full_path_equals_the_original_model(
    early: LoadedModel, tiny_teacher: LoadedModel, reviews: TextDataset
) -> None:
    ee = early.model
    enc = early.encode(reviews.texts[:12], 16)
    exits = ee.all_exits(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    assert len(exits) == 4
    torch.testing.assert_close(exits[-1], tiny_teacher.model(**enc).logits, rtol=1e-5, atol=1e-5)
    old = ee.threshold
    try:
        ee.threshold = 2.0  # never exit early
        torch.testing.assert_close(early.forward(enc), tiny_teacher.forward(enc), rtol=1e-5, atol=1e-5)
        assert set(ee.last_exit_layers) == {4}
        ee.threshold = 0.0  # always exit at the first head
        torch.testing.assert_close(early.forward(enc), exits[0], rtol=1e-5, atol=1e-5)
        assert set(ee.last_exit_layers) == {1}
    finally:
        ee.threshold = old


def test_batched_exits_match_one_by_one(early: LoadedModel, reviews: TextDataset) -> None:
    ee = early.model
    texts = reviews.texts[:16]
    old = ee.threshold
    ee.threshold = 0.9
    try:
        batched = early.predict(texts, 16)
        layers = list(ee.last_exit_layers)
        for i, t in enumerate(texts):
            torch.testing.assert_close(early.predict([t], 16)[0], batched[i], rtol=1e-4, atol=1e-4)
            assert ee.last_exit_layers == [layers[i]]
    finally:
        ee.threshold = old


def test_heads_learn_from_the_deepest_layer(early: LoadedModel, reviews: TextDataset) -> None:
    logits = exit_logits_on(early, reviews.texts, 16)
    final = logits[-1].argmax(-1)
    agree = [(z.argmax(-1) == final).float().mean().item() for z in logits[:-1]]
    assert agree[-1] > 0.9


def test_chosen_threshold_keeps_validation_accuracy(early: LoadedModel, reviews: TextDataset) -> None:
    logits = exit_logits_on(early, reviews.texts, 16)
    y = torch.tensor(reviews.labels)
    pred, depth = simulate_exits(logits, [1, 2, 3, 4], early.model.threshold)
    full = (logits[-1].argmax(-1) == y).float().mean().item()
    assert (pred == y).float().mean().item() >= full - 0.01 - 1e-9
    assert depth.float().mean().item() <= 4


def test_choose_threshold_on_constructed_exits() -> None:
    y = torch.tensor([0, 1, 0, 1])
    confident_right = torch.tensor([[5.0, 0], [0, 5.0], [5.0, 0], [0.2, 0]])  # last one unsure and wrong
    final = torch.tensor([[3.0, 0], [0, 3.0], [3.0, 0], [0, 3.0]])
    t, stats = choose_threshold([confident_right, final], [1, 2], y, max_drop=0.0)
    assert stats["accuracy"] == 100.0 and stats["mean_layers"] == pytest.approx(1.25)
    assert torch.softmax(torch.tensor([0.2, 0]), -1).max().item() < t <= torch.softmax(torch.tensor([5.0, 0]), -1).max()
    _, loose = choose_threshold([confident_right, final], [1, 2], y, max_drop=30.0)
    assert loose["mean_layers"] == 1.0 and loose["accuracy"] == 75.0


def test_save_and_load_round_trip(early: LoadedModel, reviews: TextDataset, tmp_path: Path) -> None:
    saved = save_model(early, tmp_path / "ee")
    assert saved.manifest.format == "early-exit" and (tmp_path / "ee" / "exits.safetensors").is_file()
    back = load_model(tmp_path / "ee")
    assert isinstance(back.model, EarlyExitClassifier)
    assert back.model.threshold == pytest.approx(early.model.threshold)
    assert back.manifest.fingerprint == saved.manifest.fingerprint
    torch.testing.assert_close(back.predict(reviews.texts[:8], 16), early.predict(reviews.texts[:8], 16))
    (tmp_path / "ee" / "exits.safetensors").write_bytes(b"truncated")
    with pytest.raises(InfoptError, match=r"exits\.safetensors cannot be loaded"):
        load_model(tmp_path / "ee")


def test_joint_training_trains_a_copy(tiny_teacher: LoadedModel, reviews: TextDataset) -> None:
    before = {k: v.clone() for k, v in tiny_teacher.model.state_dict().items()}
    config = dataclasses.replace(SELF, early_exit=EarlyExitConfig(freeze_backbone=False, threshold=0.8))
    ee = distill(tiny_teacher, None, reviews, config)
    assert ee.model.base is not tiny_teacher.model and ee.model.threshold == 0.8
    for k, v in tiny_teacher.model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_bad_early_exit_settings(tiny_teacher: LoadedModel, reviews: TextDataset) -> None:
    with pytest.raises(InfoptError):
        EarlyExitConfig(threshold=1.5)
    with pytest.raises(InfoptError):
        EarlyExitConfig(exit_layers=(0,))
    with pytest.raises(InfoptError, match="not inside"):
        distill(tiny_teacher, None, reviews, dataclasses.replace(SELF, early_exit=EarlyExitConfig(exit_layers=(4,))))
    with pytest.raises(InfoptError, match="no separate student"):
        distill(tiny_teacher, tiny_teacher, reviews, SELF)


def test_confidence_bound_guards_against_a_lucky_validation_set() -> None:
    y = torch.zeros(400, dtype=torch.long)
    final = torch.tensor([[3.0, 0.0]]).repeat(400, 1)
    head = torch.tensor([[5.0, 0.0]]).repeat(400, 1)
    head[:4] = torch.tensor([0.0, 5.0])  # 1% wrong, all equally confident
    _, point = choose_threshold([head, final], [1, 2], y, max_drop=1.0, confidence=0.5)
    assert point["mean_layers"] == 1.0 and point["accuracy"] == pytest.approx(99.0)
    _, careful = choose_threshold([head, final], [1, 2], y, max_drop=1.0, confidence=0.95)
    assert careful["mean_layers"] == 2.0 and careful["accuracy"] == 100.0
    with pytest.raises(InfoptError):
        EarlyExitConfig(confidence=0.3)
