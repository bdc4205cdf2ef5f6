"""`quantize(model, config)`: one entry point for every scheme; `replay` rebuilds the structure on load."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, cast

from torch import nn

from infopt.compress._checks import require_torch_module
from infopt.compress.quantize._configs import (
    QUANT_SCHEMES,
    CalibratedInt8Config,
    DynamicInt8Config,
    DynamicInt8EmbConfig,
    OnnxConfig,
    OpenVinoConfig,
    QuantConfig,
    TorchBf16Config,
    WeightInt4Config,
    WeightInt8Config,
    config_from_dict,
    config_from_name,
)
from infopt.errors import NotApplicable, UserError
from infopt.models import LoadedModel

__all__ = ["quantize", "replay"]

STAGE = "quantize"


TorchBackend = Callable[[nn.Module, Any, bool], tuple[nn.Module, dict[str, Any]]]
"""`(module, config, weights)` -> (the module quantized in place, what was done); `weights=False` for `replay`."""


def _dynamic(model: nn.Module, config: DynamicInt8Config | DynamicInt8EmbConfig,
             weights: bool) -> tuple[nn.Module, dict[str, Any]]:
    from infopt.compress.quantize._dynamic import apply_dynamic

    return apply_dynamic(model, config, weights)


def _weight_only(model: nn.Module, config: WeightInt8Config | WeightInt4Config,
                 weights: bool) -> tuple[nn.Module, dict[str, Any]]:
    from infopt.compress.quantize._weight_only import apply_weight_only

    return apply_weight_only(model, config, weights)


def _bf16(model: nn.Module, config: TorchBf16Config, weights: bool) -> tuple[nn.Module, dict[str, Any]]:
    from infopt.compress.quantize._bf16 import apply_bf16

    return apply_bf16(model, config, weights)


TORCH_BACKENDS: dict[type[QuantConfig], TorchBackend] = {
    DynamicInt8Config: _dynamic,
    DynamicInt8EmbConfig: _dynamic,
    WeightInt8Config: _weight_only,
    WeightInt4Config: _weight_only,
    TorchBf16Config: _bf16,
}
"""The torch schemes (saved as `torch-state`), by the exact type of their config."""
ONNX_SCHEMES: frozenset[type[QuantConfig]] = frozenset(
    type(c) for c in QUANT_SCHEMES.values() if c.kind == "onnx"
)
"""The ONNX Runtime schemes (saved as `onnx`, built by `_onnx.apply_onnx`), by the exact type of their config."""
OPENVINO_SCHEMES: frozenset[type[QuantConfig]] = frozenset(
    type(c) for c in QUANT_SCHEMES.values() if c.kind == "openvino"
)
"""The OpenVINO schemes (saved as `openvino`, built by `_openvino.apply_openvino`), by the exact type of their
config."""


def _not_a_scheme(config: object) -> UserError:
    return UserError(f"{type(config).__name__} is not the config of a quantization scheme.",
                     f"pass one of the configs of QUANT_SCHEMES or a scheme name: {', '.join(QUANT_SCHEMES)}.")


def _apply_torch(model: nn.Module, config: QuantConfig, weights: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    backend = TORCH_BACKENDS.get(type(config))
    if backend is None:
        if type(config) in ONNX_SCHEMES or type(config) in OPENVINO_SCHEMES:
            raise UserError(f"Scheme {config.scheme!r} does not produce a torch module.",
                            "load its folder with load_model instead of replaying its recipe.")
        raise _not_a_scheme(config)
    return backend(model, config, weights)


def _check(model: LoadedModel, config: QuantConfig) -> None:
    require_torch_module(model, "quantize")
    done = [s.get("config", {}).get("scheme") for s in model.manifest.recipe if s.get("stage") == STAGE]
    if done:
        raise NotApplicable(f"The model is already quantized ({', '.join(map(str, done))}).",
                          "quantize the float32 model it was made from.")
    if config.kind in ("onnx", "openvino") and model.task not in ("classification", "embedding"):
        onnx_free = [s for s, c in QUANT_SCHEMES.items() if c.kind == "torch"]
        raise NotApplicable(f"Scheme {config.scheme!r} supports classification and embedding models, "
                          f"not {model.task}.", f"use one of: {', '.join(onnx_free)}.")


def quantize(model: LoadedModel, config: QuantConfig | str, *,
             calibration: Sequence[str] | None = None) -> LoadedModel:
    """A new, quantized LoadedModel (the input is not modified).

    `config` is a config object (see QUANT_SCHEMES) or a scheme name with default options. `calibration`
    gives the texts for `onnx-static-int8` and `onnx-smooth-int8` (instead of their config's `calibration` field)
    and for `openvino-int8` and `openvino-int8-bf16` (NNCF).
    """
    if isinstance(config, str):
        config = config_from_name(config)
    if type(config) not in TORCH_BACKENDS and type(config) not in ONNX_SCHEMES | OPENVINO_SCHEMES:
        raise _not_a_scheme(config)
    _check(model, config)
    source: nn.Module = model.model
    module = copy.deepcopy(source).eval()
    new_model: Any
    if type(config) in ONNX_SCHEMES:
        from infopt.compress.quantize._onnx import apply_onnx

        onnx_config = cast(OnnxConfig, config)  # ONNX_SCHEMES holds exactly the classes of OnnxConfig
        new_model, info = apply_onnx(module, model.tokenizer, model.task, onnx_config, calibration or ())
        fmt = "onnx"
    elif type(config) in OPENVINO_SCHEMES:
        from infopt.compress.quantize._openvino import apply_openvino

        ov_config = cast(OpenVinoConfig, config)  # OPENVINO_SCHEMES holds exactly the classes of OpenVinoConfig
        new_model, info = apply_openvino(LoadedModel(module, model.tokenizer, model.manifest), ov_config,
                                         calibration or ())
        fmt = "openvino"
    else:
        new_model, info = _apply_torch(module, config)
        fmt = "torch-state"
    recorded = config
    if isinstance(config, CalibratedInt8Config):  # the texts stay out of the manifest; metrics has a hash
        recorded = dataclasses.replace(config, calibration=())
    manifest = model.manifest.derive(config.scheme, fmt, STAGE, recorded.to_dict(), {"quantize": info})
    return LoadedModel(new_model, model.tokenizer, manifest)


def replay(skeleton: nn.Module, recipe: list[dict[str, Any]]) -> nn.Module:
    """Rebuild the module structure a recipe produced (e.g. on a random-init model) before load_state_dict.

    Only `quantize` steps change the structure; other stages are passed over. The quantized modules are
    built empty (no quantization of the skeleton's random weights): load_state_dict fills them.
    """
    for step in recipe:
        if step.get("stage") == STAGE:
            skeleton, _ = _apply_torch(skeleton, config_from_dict(step.get("config", {})), weights=False)
    return skeleton
