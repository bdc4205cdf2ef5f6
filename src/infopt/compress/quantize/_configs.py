"""One frozen config dataclass per quantization scheme, validated on construction, JSON-round-trippable.

No scheme config inherits from another, so code picks a backend by the exact type of the config (see `_api.py`);
`QuantConfig` is their common base (no fields). Fields that several schemes share, with their checks, come from
small field groups (`_OnnxFields`, ...), which are not configs themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from infopt import _config
from infopt._config import CALIBRATION, Config, check_bool, check_choice, check_int, number_tuple, str_tuple
from infopt.compress.quantize._openvino_configs import OpenVinoFloatFields, OpenVinoInt8Fields
from infopt.errors import UserError

__all__ = [
    "QUANT_SCHEMES",
    "CalibratedInt8Config",
    "DynamicInt8Config",
    "DynamicInt8EmbConfig",
    "OnnxBlockInt8Config",
    "OnnxConfig",
    "OnnxFp32Config",
    "OnnxInt8Config",
    "OnnxInt8Emb4Config",
    "OnnxInt8VnniConfig",
    "OnnxInt8VnniEmb4Config",
    "OnnxSmoothInt8Config",
    "OnnxStaticInt8Config",
    "OpenVinoBf16Config",
    "OpenVinoConfig",
    "OpenVinoFp32Config",
    "OpenVinoInt8Bf16Config",
    "OpenVinoInt8Config",
    "QuantConfig",
    "TorchBf16Config",
    "WeightInt4Config",
    "WeightInt8Config",
    "config_from_dict",
    "config_from_name",
    "uses_calibration",
]

COMPUTE_DTYPES = ("bfloat16", "float32")
INT4_GROUP_SIZES = (32, 64, 128, 256)
BLOCK_SIZES = (16, 32, 64, 128, 256)
EMB4_BLOCK_SIZES = (16, 32, 64, 128)
ONNX_FORMATS = ("qoperator", "qdq")


class QuantConfig(Config):
    """Base of the scheme configs: the ClassVars `scheme`, `kind` and `version`, `to_dict` and `needs`; no fields."""

    scheme: ClassVar[str] = ""
    kind: ClassVar[str] = "torch"
    """`torch` (result is a torch module saved as `torch-state`), `onnx` (an ONNX Runtime session) or `openvino`
    (a compiled OpenVINO model)."""
    version: ClassVar[int] = 1
    name_field: ClassVar[str] = "scheme"

    if TYPE_CHECKING:

        @property
        def exclude(self) -> tuple[str, ...]:
            """Every scheme has it: fnmatch patterns of module names that stay in float32."""
            ...

    def needs(self) -> frozenset[str]:
        """What `quantize` must be given besides the model: {"calibration"} for the calibrated ONNX schemes."""
        return frozenset()


# --- field groups: fields and checks that several schemes share (not configs: nothing dispatches on them) ------

@dataclass(frozen=True)
class _Exclude:
    exclude: tuple[str, ...] = ()
    """fnmatch patterns of module names (e.g. `classifier`, `*.lm_head`) that stay in float32."""

    def __post_init__(self) -> None:
        str_tuple(self, "exclude")


@dataclass(frozen=True)
class _TorchInt8Fields(_Exclude):
    per_channel: bool = True
    """One weight scale per output channel (more accurate than one per tensor, same speed)."""
    activation_bits: int = 8
    """8: 8-bit activations with 7-bit weights; 7: torch.ao's default, 7-bit activations (reduce_range)
    with 8-bit weights. Both stay clear of int16 overflow in fbgemm's u8 x s8 kernels; 8 is far more
    accurate (MiniLM-L6 mean cosine to fp32 0.991 vs 0.973)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bool(self, "per_channel")
        check_choice(self, "activation_bits", (7, 8))


@dataclass(frozen=True)
class _WeightOnlyFields(_Exclude):
    compute_dtype: str = "bfloat16"
    """Activation dtype inside the kernel: `bfloat16` (fast CPU path) or `float32` (slow CPU path)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "compute_dtype", COMPUTE_DTYPES)


@dataclass(frozen=True)
class _OnnxFields(_Exclude):
    opset: int = 18
    """ONNX opset of the export (17 or newer)."""
    optimize: bool = True
    """Fuse LayerNorm / GELU (onnxruntime.transformers optimizer) and save the fused graph."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self, "opset", min=17)
        check_bool(self, "optimize")


@dataclass(frozen=True)
class _OnnxInt8Fields(_OnnxFields):
    per_channel: bool = True
    """One weight scale per output channel (per tensor loses accuracy badly on MiniLM: cosine 0.95)."""
    embeddings: bool = True
    """Also store the embedding tables (Gather) as int8, dequantizing the looked-up rows."""
    reduce_range: bool = True
    """7-bit weights (-64..64). ORT's u8 x s8 kernel on x86 CPUs without VNNI adds pairs of products in int16
    and saturates with full-range weights (measured: errors up to 36 on one MatMul); VNNI CPUs can use False
    (the `onnx-int8-vnni` schemes)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("per_channel", "embeddings", "reduce_range"):
            check_bool(self, name)


@dataclass(frozen=True)
class _Emb4Fields(_OnnxInt8Fields):
    embedding_block_size: int = 32
    """Word-embedding entries (along the hidden dim) sharing one scale and 4-bit zero point: 16, 32, 64 or 128."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "embedding_block_size", EMB4_BLOCK_SIZES)
        if not self.embeddings:
            raise UserError(f"{type(self).__name__}.embeddings is False, but the scheme exists to store the word "
                            "embedding in 4 bits.", "use onnx-int8 (or onnx-int8-vnni) with embeddings=False.")


@dataclass(frozen=True)
class _CalibratedFields(_OnnxInt8Fields):
    calibration: tuple[str, ...] = ()
    """Typical inputs (or pass `calibration=` to `quantize`); the manifest records only their count and hash."""
    max_length: int = 128
    """Token limit for each calibration text."""

    def __post_init__(self) -> None:
        super().__post_init__()
        str_tuple(self, "calibration")
        check_int(self, "max_length", min=2)

    def needs(self) -> frozenset[str]:
        """{"calibration"}: the scheme runs calibration texts through the model."""
        return frozenset({CALIBRATION})


# --- the schemes: each its own class, chosen by exact type -------------------------------------------------------

@dataclass(frozen=True)
class DynamicInt8Config(_TorchInt8Fields, QuantConfig):
    """torch.ao `quantize_dynamic`: int8 weights, activations quantized per batch at run time (nn.Linear)."""

    scheme: ClassVar[str] = "dynamic-int8"


@dataclass(frozen=True)
class DynamicInt8EmbConfig(_TorchInt8Fields, QuantConfig):
    """`dynamic-int8` plus int8 word embeddings (per-row scale), for a 4x smaller file."""

    scheme: ClassVar[str] = "dynamic-int8-emb"


@dataclass(frozen=True)
class WeightInt8Config(_WeightOnlyFields, QuantConfig):
    """Weight-only int8 per output channel for nn.Linear (`aten._weight_int8pack_mm`, as in gpt-fast)."""

    scheme: ClassVar[str] = "weight-int8"


@dataclass(frozen=True)
class WeightInt4Config(_WeightOnlyFields, QuantConfig):
    """Weight-only int4, asymmetric, group-wise along the input dim (`aten._weight_int4pack_mm_for_cpu`)."""

    scheme: ClassVar[str] = "weight-int4"

    group_size: int = 32
    """Input features sharing one scale and zero point: 32, 64, 128 or 256 (smaller is more accurate)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "group_size", INT4_GROUP_SIZES)


@dataclass(frozen=True)
class TorchBf16Config(_Exclude, QuantConfig):
    """The whole torch model in bfloat16 (token ids in, float32 out): half the size of float32.

    Faster than float32 only where the CPU computes in bf16 (AMX on Xeon Sapphire Rapids and newer, or AVX-512
    BF16); elsewhere oneDNN converts every operand and it is slower than float32. `quantize` records which."""

    scheme: ClassVar[str] = "torch-bf16"


@dataclass(frozen=True)
class OnnxFp32Config(_OnnxFields, QuantConfig):
    """Export to ONNX (torch.onnx dynamo exporter), float32, run by ONNX Runtime."""

    scheme: ClassVar[str] = "onnx-fp32"
    kind: ClassVar[str] = "onnx"


@dataclass(frozen=True)
class OnnxInt8Config(_OnnxInt8Fields, QuantConfig):
    """ONNX Runtime `quantize_dynamic`: int8 MatMul weights (MatMulInteger) and, optionally, embeddings."""

    scheme: ClassVar[str] = "onnx-int8"
    kind: ClassVar[str] = "onnx"


@dataclass(frozen=True)
class OnnxInt8VnniConfig(_OnnxInt8Fields, QuantConfig):
    """`onnx-int8` with full-range 8-bit weights, for CPUs with VNNI (AVX-512 VNNI, AVX-VNNI) or AMX.

    There ORT's u8 x s8 kernel adds products in int32 (vpdpbusd), so 8-bit weights cannot saturate and are more
    accurate than onnx-int8's 7-bit ones at the same speed. On AVX2 CPUs without VNNI its results are wrong
    (int16 saturation): use onnx-int8 there."""

    scheme: ClassVar[str] = "onnx-int8-vnni"
    kind: ClassVar[str] = "onnx"

    reduce_range: bool = False
    """7-bit weights (-64..64) if True; False (the point of this scheme) keeps all 8 bits (VNNI / AMX CPUs only)."""


@dataclass(frozen=True)
class OnnxInt8Emb4Config(_Emb4Fields, QuantConfig):
    """`onnx-int8` with the word embedding in 4 bits (com.microsoft GatherBlockQuantized, per block of
    `embedding_block_size`, asymmetric); the other embedding tables stay int8. 7-bit MatMul weights (any x86)."""

    scheme: ClassVar[str] = "onnx-int8-emb4"
    kind: ClassVar[str] = "onnx"


@dataclass(frozen=True)
class OnnxInt8VnniEmb4Config(_Emb4Fields, QuantConfig):
    """`onnx-int8-vnni` (full-range weights, VNNI / AMX CPUs only) with the word embedding in 4 bits."""

    scheme: ClassVar[str] = "onnx-int8-vnni-emb4"
    kind: ClassVar[str] = "onnx"

    reduce_range: bool = False
    """7-bit weights (-64..64) if True; False keeps all 8 bits (VNNI / AMX CPUs only)."""


@dataclass(frozen=True)
class OnnxStaticInt8Config(_CalibratedFields, QuantConfig):
    """ONNX Runtime `quantize_static`: activation ranges fixed from calibration texts (uint8 x int8)."""

    scheme: ClassVar[str] = "onnx-static-int8"
    kind: ClassVar[str] = "onnx"

    exclude: tuple[str, ...] = ("*.output.dense", "*.down_proj", "*.fc2")
    """fnmatch patterns of module names kept in float32; by default the FFN down-projections (BERT's
    `*.output.dense` also matches the attention output), whose post-GELU inputs are too heavy-tailed
    for one fixed int8 range (MiniLM worst-case cosine 0.93 -> 0.995)."""
    quant_format: str = "qoperator"
    """`qoperator` (QLinearMatMul etc.) or `qdq` (QuantizeLinear/DequantizeLinear pairs)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "quant_format", ONNX_FORMATS)


@dataclass(frozen=True)
class OnnxSmoothInt8Config(_CalibratedFields, QuantConfig):
    """`onnx-int8` after SmoothQuant: activation outlier channels scaled into the weights (calibration texts)."""

    scheme: ClassVar[str] = "onnx-smooth-int8"
    kind: ClassVar[str] = "onnx"

    alphas: tuple[float, ...] = (0.5, 0.75, 0.85, 1.0)
    """Migration strengths tried, each in (0, 1]: how much of a channel's activation range moves into the weights.
    The one with the least simulated int8 error at the model's output on the calibration texts is used."""

    def __post_init__(self) -> None:
        super().__post_init__()
        alphas = number_tuple(self, "alphas", low=0, high=1, bounds="(]",
                              allowed="a list of numbers in (0, 1], e.g. [0.5, 0.85]") or ()
        object.__setattr__(self, "alphas", tuple(float(a) for a in alphas))


@dataclass(frozen=True)
class OnnxBlockInt8Config(_OnnxFields, QuantConfig):
    """ONNX Runtime MatMulNBits with 8 bits: int8 weights in blocks, activations quantized per block at run time."""

    scheme: ClassVar[str] = "onnx-block-int8"
    kind: ClassVar[str] = "onnx"

    block_size: int = 128
    """Input features sharing one weight scale: a power of two from 16 to 256 (smaller: more accurate, bigger)."""
    embeddings: bool = True
    """Also store the embedding tables (Gather) as int8, one scale per row."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "block_size", BLOCK_SIZES)
        check_bool(self, "embeddings")


@dataclass(frozen=True)
class OpenVinoFp32Config(OpenVinoFloatFields, QuantConfig):
    """OpenVINO IR converted from the torch model (ov.convert_model), run in float32 by its CPU plugin."""

    scheme: ClassVar[str] = "openvino"
    kind: ClassVar[str] = "openvino"


@dataclass(frozen=True)
class OpenVinoBf16Config(OpenVinoFloatFields, QuantConfig):
    """The `openvino` IR compiled with the bf16 precision hint (AMX or AVX-512 BF16 CPUs only)."""

    scheme: ClassVar[str] = "openvino-bf16"
    kind: ClassVar[str] = "openvino"
    precision_hint: ClassVar[str] = "bf16"


@dataclass(frozen=True)
class OpenVinoInt8Config(OpenVinoInt8Fields, QuantConfig):
    """NNCF post-training int8 of the `openvino` IR (ModelType.TRANSFORMER, calibration texts), run with f32 hint."""

    scheme: ClassVar[str] = "openvino-int8"
    kind: ClassVar[str] = "openvino"


@dataclass(frozen=True)
class OpenVinoInt8Bf16Config(OpenVinoInt8Fields, QuantConfig):
    """The `openvino-int8` IR with the bf16 hint: what is not int8 runs in bf16 (AMX or AVX-512 BF16 CPUs only)."""

    scheme: ClassVar[str] = "openvino-int8-bf16"
    kind: ClassVar[str] = "openvino"
    precision_hint: ClassVar[str] = "bf16"


OnnxConfig = (OnnxFp32Config | OnnxInt8Config | OnnxInt8VnniConfig | OnnxInt8Emb4Config | OnnxInt8VnniEmb4Config
              | OnnxStaticInt8Config | OnnxSmoothInt8Config | OnnxBlockInt8Config)
"""The configs of the `onnx` kind (a type alias, usable with isinstance)."""
Emb4Config = OnnxInt8Emb4Config | OnnxInt8VnniEmb4Config
"""The ONNX int8 schemes that store the word embedding in 4 bits (a type alias, usable with isinstance)."""
OpenVinoConfig = OpenVinoFp32Config | OpenVinoBf16Config | OpenVinoInt8Config | OpenVinoInt8Bf16Config
"""The configs of the `openvino` kind (a type alias, usable with isinstance)."""
CalibratedInt8Config = OnnxStaticInt8Config | OnnxSmoothInt8Config
"""The ONNX int8 schemes that run calibration texts through the model: the two with `calibration` and
`max_length` fields (a type alias, usable with isinstance; no longer a base class)."""


def uses_calibration(config: QuantConfig) -> bool:
    """The scheme reads calibration texts (from `quantize(..., calibration=)` or its `calibration` field)."""
    return CALIBRATION in config.needs()


QUANT_SCHEMES: dict[str, QuantConfig] = {
    c.scheme: c()
    for c in (
        DynamicInt8Config,
        DynamicInt8EmbConfig,
        WeightInt8Config,
        WeightInt4Config,
        TorchBf16Config,
        OnnxFp32Config,
        OnnxInt8Config,
        OnnxInt8VnniConfig,
        OnnxInt8Emb4Config,
        OnnxInt8VnniEmb4Config,
        OnnxStaticInt8Config,
        OnnxSmoothInt8Config,
        OnnxBlockInt8Config,
        OpenVinoFp32Config,
        OpenVinoBf16Config,
        OpenVinoInt8Config,
        OpenVinoInt8Bf16Config,
    )
}
"""Scheme name -> its default config."""


def config_from_name(scheme: str, **overrides: Any) -> QuantConfig:
    """The default config of `scheme` with some fields replaced; UserError for unknown schemes or fields."""
    return _config.config_from_name(QUANT_SCHEMES, scheme, overrides, what="quantization scheme")


def config_from_dict(data: dict[str, Any]) -> QuantConfig:
    """Inverse of `QuantConfig.to_dict` (as read back from a manifest recipe, with or without `version`)."""
    return _config.config_from_dict(QUANT_SCHEMES, data, what="quantization scheme")
