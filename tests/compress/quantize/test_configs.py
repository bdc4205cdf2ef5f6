"""Config dataclasses: defaults, validation, lookup by name, JSON round trip, a docstring per field."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import typing

import pytest
from torch import nn

from infopt.compress.quantize import (
    QUANT_SCHEMES,
    DynamicInt8Config,
    DynamicInt8EmbConfig,
    OnnxBlockInt8Config,
    OnnxFp32Config,
    OnnxInt8Config,
    OnnxInt8Emb4Config,
    OnnxInt8VnniConfig,
    OnnxInt8VnniEmb4Config,
    OnnxSmoothInt8Config,
    OnnxStaticInt8Config,
    OpenVinoBf16Config,
    OpenVinoFp32Config,
    OpenVinoInt8Bf16Config,
    OpenVinoInt8Config,
    QuantConfig,
    TorchBf16Config,
    WeightInt4Config,
    WeightInt8Config,
    config_from_dict,
    config_from_name,
    quantize,
    uses_calibration,
)
from infopt.compress.quantize import _configs as configs_module
from infopt.compress.quantize import _openvino_configs as openvino_configs_module
from infopt.compress.quantize._api import ONNX_SCHEMES, OPENVINO_SCHEMES, TORCH_BACKENDS, _apply_torch
from infopt.compress.quantize._configs import CalibratedInt8Config, OnnxConfig, OpenVinoConfig
from infopt.errors import InfoptError

SCHEMES = ["dynamic-int8", "dynamic-int8-emb", "weight-int8", "weight-int4", "torch-bf16", "onnx-fp32", "onnx-int8",
           "onnx-int8-vnni", "onnx-int8-emb4", "onnx-int8-vnni-emb4", "onnx-static-int8", "onnx-smooth-int8",
           "onnx-block-int8", "openvino", "openvino-bf16", "openvino-int8", "openvino-int8-bf16"]


def test_schemes_registry() -> None:
    assert list(QUANT_SCHEMES) == SCHEMES
    for name, config in QUANT_SCHEMES.items():
        assert isinstance(config, QuantConfig)
        assert config.scheme == name
        kind = "onnx" if name.startswith("onnx") else "openvino" if name.startswith("openvino") else "torch"
        assert config.kind == kind


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
        ("onnx-int8-vnni", "reduce_range", "no"),
        ("onnx-int8-emb4", "embedding_block_size", 48),
        ("onnx-int8-vnni-emb4", "embedding_block_size", 256),
        ("onnx-int8-emb4", "embeddings", False),
        ("torch-bf16", "exclude", "classifier"),
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


def test_the_new_int8_variants_differ_only_in_their_defaults() -> None:
    assert OnnxInt8Config().reduce_range and not OnnxInt8VnniConfig().reduce_range
    assert OnnxInt8Emb4Config().reduce_range and not OnnxInt8VnniEmb4Config().reduce_range
    assert config_from_name("onnx-int8-vnni", embeddings=False) == OnnxInt8VnniConfig(embeddings=False)
    assert not config_from_name("onnx-int8-vnni", embeddings=False).reduce_range  # overrides keep the scheme's defaults
    assert OnnxInt8VnniEmb4Config().embedding_block_size == 32
    fields = {f.name for f in dataclasses.fields(OnnxInt8Config)}
    assert {f.name for f in dataclasses.fields(OnnxInt8VnniConfig)} == fields
    assert {f.name for f in dataclasses.fields(OnnxInt8Emb4Config)} == fields | {"embedding_block_size"}
    with pytest.raises(InfoptError, match="4 bits") as err:
        OnnxInt8VnniEmb4Config(embeddings=False)
    assert "onnx-int8-vnni" in err.value.fix


def test_static_calibration_is_a_tuple() -> None:
    config = OnnxStaticInt8Config(calibration=["a", "b"])
    assert config.calibration == ("a", "b")


def test_config_from_dict_needs_a_scheme() -> None:
    with pytest.raises(InfoptError):
        config_from_dict({"group_size": 32})


@pytest.mark.parametrize("module", [configs_module, openvino_configs_module], ids=lambda m: m.__name__)
def test_every_field_has_a_docstring(module: object) -> None:
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        body = cls.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign) and not ast.unparse(stmt.annotation).startswith("ClassVar"):
                nxt = body[i + 1] if i + 1 < len(body) else None
                documented = isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                assert documented, f"{cls.name}.{ast.unparse(stmt.target)} has no docstring"


# ---------------------------------------------------------------- flat configs, versions, dispatch, needs

NON_DEFAULT = [
    DynamicInt8Config(exclude=("classifier",), per_channel=False, activation_bits=7),
    DynamicInt8EmbConfig(activation_bits=7),
    WeightInt8Config(compute_dtype="float32", exclude=("*.lm_head",)),
    WeightInt4Config(group_size=128, compute_dtype="float32"),
    TorchBf16Config(exclude=("classifier",)),
    OnnxFp32Config(opset=19, optimize=False),
    OnnxInt8Config(per_channel=False, embeddings=False, reduce_range=False),
    OnnxInt8VnniConfig(reduce_range=True, embeddings=False),
    OnnxInt8Emb4Config(embedding_block_size=128, reduce_range=False),
    OnnxInt8VnniEmb4Config(embedding_block_size=16, exclude=("classifier",)),
    OnnxStaticInt8Config(exclude=(), quant_format="qdq", calibration=("a", "b"), max_length=16),
    OnnxSmoothInt8Config(alphas=(0.5, 1), max_length=32, calibration=["x"]),
    OnnxBlockInt8Config(block_size=32, embeddings=False),
    OpenVinoFp32Config(threads=2),
    OpenVinoBf16Config(threads=1),
    OpenVinoInt8Config(exclude=("classifier",), calibration_size=64, max_length=32),
    OpenVinoInt8Bf16Config(threads=4, calibration_size=16),
]

LEGACY = {  # recipes as saved before configs had a version (from a manifest of that time)
    "dynamic-int8": {"scheme": "dynamic-int8", "exclude": [], "per_channel": True, "activation_bits": 8},
    "weight-int4": {"scheme": "weight-int4", "exclude": ["lm_head"], "compute_dtype": "bfloat16", "group_size": 64},
    "onnx-static-int8": {"scheme": "onnx-static-int8", "exclude": ["*.output.dense", "*.down_proj", "*.fc2"],
                         "opset": 18, "optimize": True, "per_channel": True, "embeddings": True, "reduce_range": True,
                         "calibration": [], "max_length": 128, "quant_format": "qoperator"},
    "onnx-smooth-int8": {"scheme": "onnx-smooth-int8", "exclude": [], "opset": 18, "optimize": True,
                         "per_channel": True, "embeddings": True, "reduce_range": True, "calibration": [],
                         "max_length": 128, "alphas": [0.5, 0.75, 0.85, 1.0]},
}


def test_configs_are_flat_and_versioned() -> None:
    classes = [type(c) for c in QUANT_SCHEMES.values()]
    assert len(set(classes)) == len(classes)
    for cls in classes:
        configs = [b for b in cls.__mro__[1:] if issubclass(b, QuantConfig)]
        assert configs[0] is QuantConfig, cls  # no scheme config inherits from another (field groups are not configs)
        assert cls.version == 1  # declared on the class itself
        assert not any(issubclass(cls, other) for other in classes if other is not cls)


def test_default_dict_keeps_the_old_keys_plus_version() -> None:
    for scheme, config in QUANT_SCHEMES.items():
        data = config.to_dict()
        assert list(data)[:2] == ["version", "scheme"] and data["version"] == 1 and data["scheme"] == scheme
        assert list(data)[2:] == [f.name for f in dataclasses.fields(config)]
    for scheme, old in LEGACY.items():
        assert list(config_from_dict(old).to_dict())[1:] == list(old), scheme


@pytest.mark.parametrize("config", NON_DEFAULT, ids=lambda c: c.scheme)
def test_non_default_round_trip(config: QuantConfig) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    assert data["version"] == 1
    assert config_from_dict(data) == config
    assert type(config).from_dict(data) == config


def test_every_scheme_has_a_non_default_example() -> None:
    assert [c.scheme for c in NON_DEFAULT] == SCHEMES
    assert all(c != QUANT_SCHEMES[c.scheme] for c in NON_DEFAULT)


@pytest.mark.parametrize("scheme", LEGACY)
def test_old_recipes_without_version_still_load(scheme: str) -> None:
    config = config_from_dict(LEGACY[scheme])
    assert config.scheme == scheme
    assert config.to_dict() == {"version": 1, **LEGACY[scheme]}


@pytest.mark.parametrize(
    ("data", "word"),
    [
        ({"scheme": "weight-int4", "group_size": 32, "bits": 4}, "'bits'"),
        ({"version": 2, "scheme": "weight-int4"}, "version 2"),
        ({"version": 1, "scheme": "int3-magic"}, "'int3-magic'"),
    ],
)
def test_a_recipe_of_another_version_is_one_clear_error(data: dict, word: str) -> None:
    with pytest.raises(InfoptError) as err:
        config_from_dict(data)
    assert word in err.value.problem
    assert "another version of infopt" in err.value.problem
    assert "re-create the model with this version of infopt" in err.value.fix
    if "bits" in word or "version 2" in word:
        assert "WeightInt4Config" in err.value.problem


def test_old_subclass_relations_are_gone() -> None:
    static = OnnxStaticInt8Config()
    assert not isinstance(static, OnnxInt8Config | OnnxFp32Config)
    assert not isinstance(WeightInt4Config(), WeightInt8Config)
    assert not isinstance(DynamicInt8EmbConfig(), DynamicInt8Config)
    assert isinstance(static, CalibratedInt8Config) and isinstance(OnnxSmoothInt8Config(), CalibratedInt8Config)
    assert not isinstance(OnnxInt8Config(), CalibratedInt8Config)


def test_backends_are_picked_by_exact_type() -> None:
    classes = {type(c) for c in QUANT_SCHEMES.values()}
    assert set(TORCH_BACKENDS) | ONNX_SCHEMES | OPENVINO_SCHEMES == classes
    assert not set(TORCH_BACKENDS) & ONNX_SCHEMES and not (set(TORCH_BACKENDS) | ONNX_SCHEMES) & OPENVINO_SCHEMES
    assert set(typing.get_args(OnnxConfig)) == ONNX_SCHEMES
    assert set(typing.get_args(OpenVinoConfig)) == OPENVINO_SCHEMES
    assert all(cls.kind == "torch" for cls in TORCH_BACKENDS) and all(cls.kind == "onnx" for cls in ONNX_SCHEMES)
    assert all(cls.kind == "openvino" for cls in OPENVINO_SCHEMES)


@dataclasses.dataclass(frozen=True)
class _MyInt8(DynamicInt8Config):
    """A subclass is not its parent's scheme: dispatch is by exact type."""


def test_a_subclass_gets_no_backend() -> None:
    with pytest.raises(InfoptError, match="_MyInt8 is not the config of a quantization scheme"):
        _apply_torch(nn.Sequential(nn.Linear(4, 4)), _MyInt8())
    with pytest.raises(InfoptError, match="not the config of a quantization scheme"):
        quantize(None, _MyInt8())  # type: ignore[arg-type]  # refused before the model is looked at
    with pytest.raises(InfoptError, match="does not produce a torch module"):
        _apply_torch(nn.Sequential(nn.Linear(4, 4)), OnnxInt8Config())
    with pytest.raises(InfoptError, match="does not produce a torch module"):
        _apply_torch(nn.Sequential(nn.Linear(4, 4)), OpenVinoInt8Config())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_needs(scheme: str) -> None:
    config = QUANT_SCHEMES[scheme]
    calibrated = scheme in ("onnx-static-int8", "onnx-smooth-int8", "openvino-int8", "openvino-int8-bf16")
    assert config.needs() == (frozenset({"calibration"}) if calibrated else frozenset())
    assert uses_calibration(config) is calibrated
    assert config.needs() <= {"calibration", "train"}


def test_field_errors_name_the_class_and_the_allowed_values() -> None:
    with pytest.raises(InfoptError) as err:
        WeightInt4Config(group_size=48)
    assert err.value.problem == "WeightInt4Config.group_size is 48, which is not allowed."
    assert err.value.fix == "pass group_size= 32 or 64 or 128 or 256."
    with pytest.raises(InfoptError, match=r"OnnxSmoothInt8Config\.alphas is \(\)"):
        OnnxSmoothInt8Config(alphas=())
    assert OnnxSmoothInt8Config(alphas=[1]).alphas == (1.0,)
