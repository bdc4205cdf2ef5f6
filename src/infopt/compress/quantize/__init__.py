"""Post-training quantization: `quantize(model, config)` for every scheme in QUANT_SCHEMES.

torch schemes (saved as `torch-state`, rebuilt on load by `replay`): dynamic-int8, dynamic-int8-emb,
weight-int8, weight-int4, torch-bf16. ONNX Runtime schemes (classification / embedding only, saved as `onnx`):
onnx-fp32, onnx-int8, onnx-int8-vnni (full-range weights, VNNI CPUs), onnx-int8-emb4 and onnx-int8-vnni-emb4
(4-bit word embedding), onnx-smooth-int8 (SmoothQuant, then onnx-int8), onnx-static-int8, onnx-block-int8.
OpenVINO schemes (classification / embedding only, saved as `openvino`, need `pip install 'infopt[openvino]'`):
openvino (float32 IR), openvino-bf16 (bf16 hint), openvino-int8 (NNCF int8), openvino-int8-bf16.
`trim_vocab` (a stage of its own, `vocab-trim`) keeps only the vocabulary a domain uses.
"""

from infopt.compress.quantize._api import quantize, replay
from infopt.compress.quantize._configs import (
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
    uses_calibration,
)
from infopt.compress.quantize._embedding import Int8Embedding
from infopt.compress.quantize._metrics import sqnr
from infopt.compress.quantize._openvino import OpenVinoModel
from infopt.compress.quantize._vocab import VOCAB_STAGE, VocabTrimConfig, trim_vocab
from infopt.compress.quantize._weight_only import Int4WeightOnlyLinear, Int8WeightOnlyLinear

__all__ = [
    "QUANT_SCHEMES",
    "VOCAB_STAGE",
    "DynamicInt8Config",
    "DynamicInt8EmbConfig",
    "Int4WeightOnlyLinear",
    "Int8Embedding",
    "Int8WeightOnlyLinear",
    "OnnxBlockInt8Config",
    "OnnxFp32Config",
    "OnnxInt8Config",
    "OnnxInt8Emb4Config",
    "OnnxInt8VnniConfig",
    "OnnxInt8VnniEmb4Config",
    "OnnxSmoothInt8Config",
    "OnnxStaticInt8Config",
    "OpenVinoBf16Config",
    "OpenVinoFp32Config",
    "OpenVinoInt8Bf16Config",
    "OpenVinoInt8Config",
    "OpenVinoModel",
    "QuantConfig",
    "TorchBf16Config",
    "VocabTrimConfig",
    "WeightInt4Config",
    "WeightInt8Config",
    "config_from_dict",
    "config_from_name",
    "quantize",
    "replay",
    "sqnr",
    "trim_vocab",
    "uses_calibration",
]
