"""One frozen config dataclass per quantization scheme, validated on construction, JSON-round-trippable."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from infopt.errors import UserError

__all__ = [
    "QUANT_SCHEMES",
    "CalibratedInt8Config",
    "DynamicInt8Config",
    "DynamicInt8EmbConfig",
    "OnnxBlockInt8Config",
    "OnnxFp32Config",
    "OnnxInt8Config",
    "OnnxSmoothInt8Config",
    "OnnxStaticInt8Config",
    "QuantConfig",
    "WeightInt4Config",
    "WeightInt8Config",
    "config_from_dict",
    "config_from_name",
    "uses_calibration",
]

COMPUTE_DTYPES = ("bfloat16", "float32")
INT4_GROUP_SIZES = (32, 64, 128, 256)
BLOCK_SIZES = (16, 32, 64, 128, 256)
ONNX_FORMATS = ("qoperator", "qdq")


def _bad(config: QuantConfig, field: str, value: object, allowed: str) -> UserError:
    return UserError(
        f"{type(config).__name__}.{field} is {value!r}, which is not allowed for scheme {config.scheme!r}.",
        f"pass {field}= {allowed}.",
    )


def _as_str_tuple(config: QuantConfig, field: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise _bad(config, field, value, "a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class QuantConfig:
    """Fields every scheme has. Subclasses set `scheme` and add their own fields."""

    scheme: ClassVar[str] = ""
    kind: ClassVar[str] = "torch"
    """`torch` (result is a torch module saved as `torch-state`) or `onnx` (an ONNX Runtime session)."""

    exclude: tuple[str, ...] = ()
    """fnmatch patterns of module names (e.g. `classifier`, `*.lm_head`) that stay in float32."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", _as_str_tuple(self, "exclude", self.exclude))

    def to_dict(self) -> dict[str, Any]:
        """`{"scheme": ..., **fields}`, as stored in a manifest's recipe."""
        out: dict[str, Any] = {"scheme": self.scheme}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def _check_bool(config: QuantConfig, *names: str) -> None:
    for name in names:
        if not isinstance(getattr(config, name), bool):
            raise _bad(config, name, getattr(config, name), "True or False")


@dataclass(frozen=True)
class DynamicInt8Config(QuantConfig):
    """torch.ao `quantize_dynamic`: int8 weights, activations quantized per batch at run time (nn.Linear)."""

    scheme: ClassVar[str] = "dynamic-int8"

    per_channel: bool = True
    """One weight scale per output channel (more accurate than one per tensor, same speed)."""
    activation_bits: int = 8
    """8: 8-bit activations with 7-bit weights; 7: torch.ao's default, 7-bit activations (reduce_range)
    with 8-bit weights. Both stay clear of int16 overflow in fbgemm's u8 x s8 kernels; 8 is far more
    accurate (MiniLM-L6 mean cosine to fp32 0.991 vs 0.973)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_bool(self, "per_channel")
        if self.activation_bits not in (7, 8) or isinstance(self.activation_bits, bool):
            raise _bad(self, "activation_bits", self.activation_bits, "7 or 8")


@dataclass(frozen=True)
class DynamicInt8EmbConfig(DynamicInt8Config):
    """`dynamic-int8` plus int8 word embeddings (per-row scale), for a 4x smaller file."""

    scheme: ClassVar[str] = "dynamic-int8-emb"


@dataclass(frozen=True)
class WeightInt8Config(QuantConfig):
    """Weight-only int8 per output channel for nn.Linear (`aten._weight_int8pack_mm`, as in gpt-fast)."""

    scheme: ClassVar[str] = "weight-int8"

    compute_dtype: str = "bfloat16"
    """Activation dtype inside the kernel: `bfloat16` (fast CPU path) or `float32` (slow CPU path)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise _bad(self, "compute_dtype", self.compute_dtype, " or ".join(map(repr, COMPUTE_DTYPES)))


@dataclass(frozen=True)
class WeightInt4Config(WeightInt8Config):
    """Weight-only int4, asymmetric, group-wise along the input dim (`aten._weight_int4pack_mm_for_cpu`)."""

    scheme: ClassVar[str] = "weight-int4"

    group_size: int = 32
    """Input features sharing one scale and zero point: 32, 64, 128 or 256 (smaller is more accurate)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.group_size, bool) or self.group_size not in INT4_GROUP_SIZES:
            raise _bad(self, "group_size", self.group_size, " or ".join(map(str, INT4_GROUP_SIZES)))


@dataclass(frozen=True)
class OnnxFp32Config(QuantConfig):
    """Export to ONNX (torch.onnx dynamo exporter), float32, run by ONNX Runtime."""

    scheme: ClassVar[str] = "onnx-fp32"
    kind: ClassVar[str] = "onnx"

    opset: int = 18
    """ONNX opset of the export (17 or newer)."""
    optimize: bool = True
    """Fuse LayerNorm / GELU (onnxruntime.transformers optimizer) and save the fused graph."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or self.opset < 17:
            raise _bad(self, "opset", self.opset, "an integer >= 17")
        _check_bool(self, "optimize")


@dataclass(frozen=True)
class OnnxInt8Config(OnnxFp32Config):
    """ONNX Runtime `quantize_dynamic`: int8 MatMul weights (MatMulInteger) and, optionally, embeddings."""

    scheme: ClassVar[str] = "onnx-int8"

    per_channel: bool = True
    """One weight scale per output channel (per tensor loses accuracy badly on MiniLM: cosine 0.95)."""
    embeddings: bool = True
    """Also store the embedding tables (Gather) as int8, dequantizing the looked-up rows."""
    reduce_range: bool = True
    """7-bit weights (-64..64). ORT's u8 x s8 kernel on x86 CPUs without VNNI adds pairs of products in int16
    and saturates with full-range weights (measured: errors up to 36 on one MatMul); VNNI CPUs can use False."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_bool(self, "per_channel", "embeddings", "reduce_range")


@dataclass(frozen=True)
class OnnxBlockInt8Config(OnnxFp32Config):
    """ONNX Runtime MatMulNBits with 8 bits: int8 weights in blocks, activations quantized per block at run time."""

    scheme: ClassVar[str] = "onnx-block-int8"

    block_size: int = 128
    """Input features sharing one weight scale: a power of two from 16 to 256 (smaller: more accurate, bigger)."""
    embeddings: bool = True
    """Also store the embedding tables (Gather) as int8, one scale per row."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.block_size, bool) or self.block_size not in BLOCK_SIZES:
            raise _bad(self, "block_size", self.block_size, " or ".join(map(str, BLOCK_SIZES)))
        _check_bool(self, "embeddings")


@dataclass(frozen=True)
class CalibratedInt8Config(OnnxInt8Config):
    """The ONNX int8 schemes that run calibration texts through the model (no scheme of its own)."""

    calibration: tuple[str, ...] = ()
    """Typical inputs (or pass `calibration=` to `quantize`); the manifest records only their count and hash."""
    max_length: int = 128
    """Token limit for each calibration text."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "calibration", _as_str_tuple(self, "calibration", self.calibration))
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 2:
            raise _bad(self, "max_length", self.max_length, "an integer >= 2")


@dataclass(frozen=True)
class OnnxStaticInt8Config(CalibratedInt8Config):
    """ONNX Runtime `quantize_static`: activation ranges fixed from calibration texts (uint8 x int8)."""

    scheme: ClassVar[str] = "onnx-static-int8"

    exclude: tuple[str, ...] = ("*.output.dense", "*.down_proj", "*.fc2")
    """fnmatch patterns of module names kept in float32; by default the FFN down-projections (BERT's
    `*.output.dense` also matches the attention output), whose post-GELU inputs are too heavy-tailed
    for one fixed int8 range (MiniLM worst-case cosine 0.93 -> 0.995)."""
    quant_format: str = "qoperator"
    """`qoperator` (QLinearMatMul etc.) or `qdq` (QuantizeLinear/DequantizeLinear pairs)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quant_format not in ONNX_FORMATS:
            raise _bad(self, "quant_format", self.quant_format, " or ".join(map(repr, ONNX_FORMATS)))


@dataclass(frozen=True)
class OnnxSmoothInt8Config(CalibratedInt8Config):
    """`onnx-int8` after SmoothQuant: activation outlier channels scaled into the weights (calibration texts)."""

    scheme: ClassVar[str] = "onnx-smooth-int8"

    alphas: tuple[float, ...] = (0.5, 0.75, 0.85, 1.0)
    """Migration strengths tried, each in (0, 1]: how much of a channel's activation range moves into the weights.
    The one with the least simulated int8 error at the model's output on the calibration texts is used."""

    def __post_init__(self) -> None:
        super().__post_init__()
        ok = not isinstance(self.alphas, str) and isinstance(self.alphas, Sequence) and len(self.alphas) > 0
        if not ok or not all(isinstance(a, int | float) and not isinstance(a, bool) and 0 < a <= 1
                             for a in self.alphas):
            raise _bad(self, "alphas", self.alphas, "a list of numbers in (0, 1], e.g. [0.5, 0.85]")
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))


def uses_calibration(config: QuantConfig) -> bool:
    """The scheme reads calibration texts (from `quantize(..., calibration=)` or its `calibration` field)."""
    return isinstance(config, CalibratedInt8Config)


QUANT_SCHEMES: dict[str, QuantConfig] = {
    c.scheme: c()
    for c in (
        DynamicInt8Config,
        DynamicInt8EmbConfig,
        WeightInt8Config,
        WeightInt4Config,
        OnnxFp32Config,
        OnnxInt8Config,
        OnnxStaticInt8Config,
        OnnxSmoothInt8Config,
        OnnxBlockInt8Config,
    )
}
"""Scheme name -> its default config."""


def config_from_name(scheme: str, **overrides: Any) -> QuantConfig:
    """The default config of `scheme` with some fields replaced; InfoptError for unknown schemes or fields."""
    if scheme not in QUANT_SCHEMES:
        raise UserError(
            f"Unknown quantization scheme {scheme!r}.", f"use one of: {', '.join(QUANT_SCHEMES)}."
        )
    default = QUANT_SCHEMES[scheme]
    known = [f.name for f in fields(default)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise UserError(
            f"Scheme {scheme!r} has no option {', '.join(unknown)}.",
            f"use only {', '.join(known) or 'no options'}.",
        )
    return dataclasses.replace(default, **overrides)


def config_from_dict(data: dict[str, Any]) -> QuantConfig:
    """Inverse of `QuantConfig.to_dict` (as read back from a manifest recipe)."""
    rest = dict(data)
    scheme = rest.pop("scheme", None)
    if not isinstance(scheme, str):
        raise UserError(f"A quantize step in the recipe has no scheme ({data!r}).", "re-create the model.")
    return config_from_name(scheme, **rest)
