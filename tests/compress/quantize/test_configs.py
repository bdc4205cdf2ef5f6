"""Config dataclasses: defaults, validation, lookup by name, JSON round trip, a docstring per field."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json

import pytest

from infopt.compress.quantize import (
    QUANT_SCHEMES,
    OnnxStaticInt8Config,
    QuantConfig,
    WeightInt4Config,
    config_from_dict,
    config_from_name,
)
from infopt.compress.quantize import _configs as configs_module
from infopt.errors import InfoptError

SCHEMES = ["dynamic-int8", "dynamic-int8-emb", "weight-int8", "weight-int4", "onnx-fp32", "onnx-int8",
           "onnx-static-int8", "onnx-smooth-int8", "onnx-block-int8"]


def test_schemes_registry() -> None:
    assert list(QUANT_SCHEMES) == SCHEMES
    for name, config in QUANT_SCHEMES.items():
        assert isinstance(config, QuantConfig)
        assert config.scheme == name
        assert config.kind == ("onnx" if name.startswith("onnx") else "torch")


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        QUANT_SCHEMES["weight-int4"].group_size = 64  # type: ignore[attr-defined,misc]


def test_unknown_scheme_names_the_valid_ones() -> None:
    with pytest.raises(InfoptError) as err:
        config_from_name("int3-magic")
    for name in SCHEMES:
        assert name in err.value.fix


def test_unknown_option() -> None:
    with pytest.raises(InfoptError, match="group_size"):
        config_from_name("dynamic-int8", group_size=64)


def test_overrides() -> None:
    config = config_from_name("weight-int4", group_size=128, exclude=["lm_head"])
    assert config == WeightInt4Config(group_size=128, exclude=("lm_head",))
    assert config.exclude == ("lm_head",)


@pytest.mark.parametrize(
    ("scheme", "field", "value"),
    [
        ("weight-int4", "group_size", 48),
        ("weight-int4", "group_size", 16),
        ("weight-int4", "group_size", True),
        ("weight-int8", "compute_dtype", "float16"),
        ("dynamic-int8", "per_channel", "yes"),
        ("dynamic-int8", "activation_bits", 4),
        ("dynamic-int8-emb", "exclude", "classifier"),
        ("onnx-fp32", "opset", 13),
        ("onnx-int8", "embeddings", 1),
        ("onnx-static-int8", "quant_format", "qlinear"),
        ("onnx-static-int8", "max_length", 1),
        ("onnx-static-int8", "calibration", [1, 2]),
        ("onnx-smooth-int8", "alpha", 0),
        ("onnx-smooth-int8", "alpha", 1.5),
        ("onnx-smooth-int8", "alpha", "high"),
        ("onnx-smooth-int8", "max_length", 0),
        ("onnx-smooth-int8", "calibration", "one text"),
    ],
)
def test_invalid_values(scheme: str, field: str, value: object) -> None:
    with pytest.raises(InfoptError) as err:
        config_from_name(scheme, **{field: value})
    assert field in str(err.value)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dict_round_trip_through_json(scheme: str) -> None:
    config = QUANT_SCHEMES[scheme]
    data = json.loads(json.dumps(config.to_dict()))
    assert data["scheme"] == scheme
    assert config_from_dict(data) == config


def test_static_calibration_is_a_tuple() -> None:
    config = OnnxStaticInt8Config(calibration=["a", "b"])
    assert config.calibration == ("a", "b")


def test_config_from_dict_needs_a_scheme() -> None:
    with pytest.raises(InfoptError):
        config_from_dict({"group_size": 32})


def test_every_field_has_a_docstring() -> None:
    tree = ast.parse(inspect.getsource(configs_module))
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        body = cls.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign) and not ast.unparse(stmt.annotation).startswith("ClassVar"):
                nxt = body[i + 1] if i + 1 < len(body) else None
                documented = isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                assert documented, f"{cls.name}.{ast.unparse(stmt.target)} has no docstring"
