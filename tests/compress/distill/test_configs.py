"""Distillation configs: every field checked with a message naming it, and a versioned dict round trip."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from infopt.compress.distill import DistillConfig, EarlyExitConfig, StudentConfig
from infopt.compress.distill._loss import check_alpha, check_temperature
from infopt.errors import InfoptError
from infopt.train import FinetuneConfig


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (DistillConfig, "temperature", 0.0),
        (DistillConfig, "temperature", float("inf")),
        (DistillConfig, "alpha", 1.5),
        (DistillConfig, "alpha", float("nan")),
        (DistillConfig, "feature", -1.0),
        (DistillConfig, "relation", "1"),
        (DistillConfig, "attention", float("inf")),
        (DistillConfig, "scheme", "sideways"),
        (DistillConfig, "layer_map", (0, 2)),
        (DistillConfig, "layer_map", ()),
        (DistillConfig, "teacher_weights", (0.5, -1.0)),
        (DistillConfig, "teacher_weights", ()),
        (DistillConfig, "train", {"epochs": 1}),
        (DistillConfig, "max_steps", 0),
        (DistillConfig, "max_steps", 2.5),
        (DistillConfig, "cache", "yes"),
        (DistillConfig, "early_exit", None),
        (EarlyExitConfig, "exit_layers", (0,)),
        (EarlyExitConfig, "exit_layers", ()),
        (EarlyExitConfig, "threshold", 1.5),
        (EarlyExitConfig, "threshold", 0.0),
        (EarlyExitConfig, "max_drop", -0.1),
        (EarlyExitConfig, "confidence", 0.3),
        (EarlyExitConfig, "confidence", 1.0),
        (EarlyExitConfig, "freeze_backbone", 0),
        (EarlyExitConfig, "head_epochs", 0),
        (EarlyExitConfig, "head_lr", -1e-3),
        (StudentConfig, "init", "magic"),
        (StudentConfig, "layers", (0, 0)),
        (StudentConfig, "layers", (-1,)),
        (StudentConfig, "layers", ()),
        (StudentConfig, "num_layers", 0),
    ],
)
def test_bad_fields_are_named(cls: type, field: str, value: object) -> None:
    with pytest.raises(InfoptError) as err:
        cls(**{field: value})
    assert err.value.problem.startswith(f"{cls.__name__}.{field} is ")
    assert f"pass {field}=" in err.value.fix


def test_messages_keep_their_hints() -> None:
    with pytest.raises(InfoptError, match="repeat"):
        StudentConfig(layers=(0, 0))
    with pytest.raises(InfoptError, match="teacher weights sum to 0"):
        DistillConfig(teacher_weights=(0.0, 0.0))
    with pytest.raises(InfoptError, match="no margin"):
        EarlyExitConfig(confidence=0.2)


def test_loss_arguments_are_checked_with_the_same_rules() -> None:
    with pytest.raises(InfoptError) as err:
        check_temperature(0.0)
    assert err.value.problem == "Distillation temperature is 0.0, which is not allowed."
    with pytest.raises(InfoptError, match="Distillation beta is 2"):
        check_alpha(2, "beta")
    check_temperature(1)
    check_alpha(0)
    check_alpha(1.0)


def test_sequences_become_tuples() -> None:
    config = DistillConfig(layer_map=[1, 3], teacher_weights=[0.6, 0.4])  # type: ignore[arg-type]
    assert config.layer_map == (1, 3) and config.teacher_weights == (0.6, 0.4)
    assert StudentConfig(layers=[0, 2]).layers == (0, 2)  # type: ignore[arg-type]
    assert EarlyExitConfig(exit_layers=[1, 2]).exit_layers == (1, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "config",
    [
        DistillConfig(),
        DistillConfig(temperature=2.0, alpha=0.0, feature=1.0, relation=0.5, attention=2, layer_map=(2, 4),
                      scheme="online", teacher_weights=(0.6, 0.4), max_steps=10, cache=False,
                      train=FinetuneConfig(epochs=2, batch_size=8, lr=3e-4, warmup=0.0, seed=3),
                      early_exit=EarlyExitConfig(exit_layers=(1, 2), threshold=0.8, freeze_backbone=False)),
        EarlyExitConfig(),
        StudentConfig(),
        StudentConfig(init="random", num_layers=2, name="tiny"),
        StudentConfig(layers=(0, 3)),
    ],
)
def test_round_trip(config: Any) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    assert data["version"] == 1
    assert type(config).from_dict(data) == config


def test_nested_configs_are_versioned_dicts() -> None:
    data = DistillConfig().to_dict()
    assert data["train"]["version"] == 1 and data["early_exit"]["version"] == 1
    old = dataclasses.asdict(DistillConfig())  # a dict without versions
    assert DistillConfig.from_dict(old) == DistillConfig()
    with pytest.raises(InfoptError, match="another version of infopt"):
        DistillConfig.from_dict({**old, "train": {"epochs": 1, "momentum": 0.9}})


def test_every_config_has_a_version() -> None:
    for cls in (DistillConfig, EarlyExitConfig, StudentConfig):
        assert cls.__dict__["version"] == 1
