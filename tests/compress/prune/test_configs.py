"""Configs: validated on construction with clear errors, and round-tripped through the manifest recipe."""

from __future__ import annotations

import dataclasses
import json

import pytest
from torch import nn

from infopt.compress.prune import (
    PRUNE_METHODS,
    MagnitudeConfig,
    PruneConfig,
    RecoveryConfig,
    StructuredConfig,
    WandaConfig,
    config_from_dict,
    config_from_name,
    prune,
)
from infopt.compress.prune._api import METHODS
from infopt.errors import InfoptError
from infopt.models import LoadedModel, Manifest


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


# ---------------------------------------------------------------- flat configs, versions, dispatch, needs

LEGACY = [  # recipes as saved before configs had a version (from manifests of that time)
    {"method": "magnitude", "exclude": [], "recovery": {"epochs": 0.1, "lr": 0.0001, "batch_size": 32,
     "max_length": 64, "distill": True, "temperature": 4.0, "alpha": 0.5, "seed": 0}, "calibration_size": 64,
     "calibration_length": 128, "sparsity": 0.9, "scope": "layer", "pattern": None, "steps": 3},
    {"method": "wanda", "exclude": [], "recovery": None, "calibration_size": 64, "calibration_length": 128,
     "sparsity": 0.5, "scope": "row", "pattern": "2:4", "steps": 1},
    {"method": "structured", "exclude": [], "recovery": None, "calibration_size": 512, "calibration_length": 128,
     "heads": 0.25, "ffn": 0.5, "layers": [1, 3], "importance": "taylor"},
]


def test_configs_are_flat_and_versioned() -> None:
    classes = [type(c) for c in PRUNE_METHODS.values()]
    for cls in classes:
        configs = [b for b in cls.__mro__[1:] if issubclass(b, PruneConfig)]
        assert configs[0] is PruneConfig, cls  # no scheme config inherits from another (field groups are not configs)
        assert cls.version == 1
    assert not isinstance(WandaConfig(), MagnitudeConfig)
    assert RecoveryConfig.version == 1 and "version" in RecoveryConfig.__dict__
    assert [f.name for f in dataclasses.fields(WandaConfig)] == [f.name for f in dataclasses.fields(MagnitudeConfig)]


@pytest.mark.parametrize("method", ["magnitude", "wanda", "structured"])
def test_defaults_round_trip_with_the_old_keys_plus_version(method: str) -> None:
    config = PRUNE_METHODS[method]
    data = json.loads(json.dumps(config.to_dict()))
    assert list(data)[:2] == ["version", "method"] and data["version"] == 1
    assert list(data)[2:] == [f.name for f in dataclasses.fields(config)]
    assert config_from_dict(data) == config


def test_nested_recovery_is_a_versioned_dict() -> None:
    config = StructuredConfig(recovery=RecoveryConfig(epochs=0.5, distill=False))
    data = config.to_dict()
    assert data["recovery"] == {"version": 1, **dataclasses.asdict(RecoveryConfig(epochs=0.5, distill=False))}
    assert config_from_dict(json.loads(json.dumps(data))) == config
    assert RecoveryConfig.from_dict(data["recovery"]) == config.recovery


@pytest.mark.parametrize("old", LEGACY, ids=lambda d: d["method"])
def test_old_recipes_without_version_still_load(old: dict) -> None:
    config = config_from_dict(old)
    assert config.method == old["method"]
    new = config.to_dict()
    assert new.pop("version") == 1
    if new["recovery"] is not None:
        assert new["recovery"].pop("version") == 1
    assert new == old


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"method": "magnitude", "sparsity": 0.5, "block": 4}, ["MagnitudeConfig", "'block'"]),
        ({"method": "magnitude", "recovery": {"epochs": 1, "warmup": 0.1}}, ["RecoveryConfig", "'warmup'"]),
        ({"version": 9, "method": "structured"}, ["StructuredConfig", "version 9"]),
        ({"method": "magnitude", "recovery": {"version": 2}}, ["RecoveryConfig", "version 2"]),
        ({"version": 1, "method": "sparsegpt"}, ["'sparsegpt'"]),
    ],
)
def test_a_recipe_of_another_version_is_one_clear_error(data: dict, words: list[str]) -> None:
    with pytest.raises(InfoptError) as err:
        config_from_dict(data)
    for word in [*words, "another version of infopt"]:
        assert word in err.value.problem
    assert "re-create the model with this version of infopt" in err.value.fix


def test_options_by_name() -> None:
    config = config_from_name("magnitude", steps=2, recovery={"epochs": 0.2})
    assert config == MagnitudeConfig(steps=2, recovery=RecoveryConfig(epochs=0.2))
    with pytest.raises(InfoptError, match="RecoveryConfig has no option warmup"):
        config_from_name("wanda", recovery={"warmup": 0.1})
    with pytest.raises(InfoptError, match=r"MagnitudeConfig\.recovery"):
        MagnitudeConfig(recovery={"epochs": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "RecoveryConfig.epochs is 0, which is not allowed."),
        ({"batch_size": 2.0}, "RecoveryConfig.batch_size is 2.0, which is not allowed."),
        ({"distill": 1}, "RecoveryConfig.distill is 1, which is not allowed."),
        ({"seed": None}, "RecoveryConfig.seed is None, which is not allowed."),
    ],
)
def test_recovery_errors_name_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(InfoptError) as err:
        RecoveryConfig(**kwargs)
    assert err.value.problem == message


def test_methods_are_picked_by_exact_type() -> None:
    assert set(METHODS) == {type(c) for c in PRUNE_METHODS.values()}

    @dataclasses.dataclass(frozen=True)
    class MyMagnitude(MagnitudeConfig):
        pass

    model = LoadedModel(nn.Sequential(nn.Linear(2, 2)), None, Manifest(name="m", task="classification"))
    with pytest.raises(InfoptError, match="MyMagnitude is not the config of a pruning method"):
        prune(model, MyMagnitude())


@pytest.mark.parametrize(
    ("config", "needs"),
    [
        (MagnitudeConfig(), set()),
        (MagnitudeConfig(pattern="2:4"), set()),
        (MagnitudeConfig(sparsity=0.9, steps=3, recovery=RecoveryConfig()), {"train"}),
        (WandaConfig(), {"calibration"}),
        (WandaConfig(recovery=RecoveryConfig()), {"calibration", "train"}),
        (StructuredConfig(heads=0.5), set()),
        (StructuredConfig(ffn=0.5, layers=(1, 2)), set()),  # named layers: no influence to measure
        (StructuredConfig(layers=1), {"calibration"}),
        (StructuredConfig(heads=0.5, importance="taylor"), {"calibration", "train"}),
        (StructuredConfig(ffn=0.5, recovery=RecoveryConfig()), {"train"}),
        (StructuredConfig(layers=2, recovery=RecoveryConfig()), {"calibration", "train"}),
    ],
)
def test_needs(config: PruneConfig, needs: set[str]) -> None:
    assert config.needs() == needs
