"""Configs: validated on construction with clear errors, and round-tripped through the manifest recipe."""

from __future__ import annotations

import json

import pytest

from infopt.compress.prune import (
    PRUNE_METHODS,
    MagnitudeConfig,
    RecoveryConfig,
    StructuredConfig,
    WandaConfig,
    config_from_dict,
    config_from_name,
)
from infopt.errors import InfoptError


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_sparsity_outside_zero_one_is_refused(sparsity: object) -> None:
    with pytest.raises(InfoptError, match=r"sparsity.*\[0, 1\)"):
        MagnitudeConfig(sparsity=sparsity)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["heads", "ffn"])
@pytest.mark.parametrize("value", [-0.5, 1.0])
def test_structured_fractions_outside_zero_one_are_refused(field: str, value: float) -> None:
    with pytest.raises(InfoptError, match=field):
        StructuredConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scope": "neuron"}, "scope"),
        ({"pattern": "4:2"}, "N:M"),
        ({"pattern": "2-4"}, "N:M"),
        ({"pattern": "1:4"}, "sparsity=0.75"),
        ({"pattern": "2:4", "scope": "global"}, "scope='layer'"),
        ({"steps": 3}, "recovery"),
        ({"steps": 0}, "steps"),
        ({"exclude": "classifier"}, "list of strings"),
        ({"calibration_size": 0}, "calibration_size"),
    ],
)
def test_bad_unstructured_configs(kwargs: dict, match: str) -> None:
    with pytest.raises(InfoptError, match=match):
        MagnitudeConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layers": -1}, "layers"),
        ({"layers": (1, 1)}, "distinct"),
        ({"layers": 1.5}, "layers"),
        ({"importance": "random"}, "importance"),
    ],
)
def test_bad_structured_configs(kwargs: dict, match: str) -> None:
    with pytest.raises(InfoptError, match=match):
        StructuredConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"alpha": 1.5}, "alpha"), ({"temperature": 0}, "temperature")],
)
def test_bad_recovery_configs(kwargs: dict, match: str) -> None:
    with pytest.raises(InfoptError, match=match):
        RecoveryConfig(**kwargs)


def test_defaults_and_names() -> None:
    assert set(PRUNE_METHODS) == {"magnitude", "wanda", "structured"}
    assert WandaConfig().scope == "row" and MagnitudeConfig().scope == "layer"
    assert MagnitudeConfig(pattern="2:4").sparsity == 0.5
    assert StructuredConfig(layers=[5, 2]).layers == (2, 5)
    with pytest.raises(InfoptError, match="Unknown pruning method"):
        config_from_name("random")
    with pytest.raises(InfoptError, match="has no option heads"):
        config_from_name("magnitude", heads=0.5)


@pytest.mark.parametrize(
    "config",
    [
        MagnitudeConfig(sparsity=0.9, steps=3, recovery=RecoveryConfig(epochs=0.1), exclude=("*.query",)),
        WandaConfig(pattern="2:4"),
        StructuredConfig(heads=0.25, ffn=0.5, layers=(0, 3), importance="taylor", recovery=RecoveryConfig()),
        StructuredConfig(layers=2),
    ],
)
def test_configs_round_trip_through_json(config: object) -> None:
    data = json.loads(json.dumps(config.to_dict()))  # type: ignore[attr-defined]
    assert config_from_dict(data) == config
