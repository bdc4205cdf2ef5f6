"""The `onnx-*` schemes: export with torch.onnx, quantize with ONNX Runtime.

The legacy TorchScript exporter (`dynamo=False`) still runs in torch 2.13 but gives wrong outputs for
transformers 5 BERT models (max error > 1 on the traced input itself), so the dynamo exporter is used and
every export is checked against the torch model before anything else happens.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import inspect
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from infopt.compress.quantize._configs import (
    CalibratedInt8Config,
    Emb4Config,
    OnnxBlockInt8Config,
    OnnxConfig,
    OnnxFp32Config,
    OnnxInt8Config,
    OnnxInt8VnniConfig,
    OnnxSmoothInt8Config,
    OnnxStaticInt8Config,
)
from infopt.compress.quantize._modules import excluded
from infopt.errors import NotApplicable, UserError
from infopt.models import OnnxModel

__all__ = ["ONNX_INPUTS", "TASK_OUTPUTS", "TaskOutput", "apply_onnx", "export_inputs", "export_onnx",
           "sample_inputs"]

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TASK_OUTPUTS = {"classification": "logits", "embedding": "last_hidden_state"}
"""The task's one output, as the model returns it (an attribute, like a Hugging Face model's)."""
_FUSABLE = {"bert", "pruned_bert", "roberta", "distilbert", "xlm-roberta", "camembert", "electra", "mpnet"}
"""config.model_type values the onnxruntime.transformers `bert` optimizer understands."""
_SCOPE = "model."
EXPORT_TOLERANCE = 1e-3


class TaskOutput(nn.Module):
    """Tensors in, the task's one output tensor out (what OnnxModel and OpenVinoModel expose as an attribute): the
    module the exporters trace."""

    def __init__(self, model: nn.Module, output: str) -> None:
        super().__init__()
        self.model, self.output = model, output

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask, **extra), self.output)


def export_inputs(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The inputs an exported graph takes: those of ONNX_INPUTS the tokenizer gives and the model's forward takes."""
    names = [n for n in ONNX_INPUTS if n in tokenizer.model_input_names]
    if "token_type_ids" in names and "token_type_ids" not in inspect.signature(model.forward).parameters:
        names.remove("token_type_ids")
    return names


def sample_inputs(tokenizer: PreTrainedTokenizerBase, names: list[str]) -> dict[str, torch.Tensor]:
    """Two texts of different lengths, padded: what the exporters trace and check against torch."""
    enc = tokenizer(["a short text", "and a rather longer second text to pad the first one"],
                    padding=True, return_tensors="pt")
    return {n: enc[n] for n in names}


def export_onnx(model: nn.Module, tokenizer: PreTrainedTokenizerBase, task: str, path: Path, opset: int) -> None:
    """Write `path` (one file), dynamic batch and sequence axes; raises if ORT disagrees with torch."""
    output = TASK_OUTPUTS[task]
    names = export_inputs(model, tokenizer)
    sample = sample_inputs(tokenizer, names)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    wrapper = TaskOutput(model, output).eval()
    with warnings.catch_warnings(), torch.no_grad(), _quiet("torch.onnx"):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper, (), str(path), kwargs=sample, dynamo=True, opset_version=opset, input_names=names,
                output_names=[output], dynamic_shapes={n: {0: batch, 1: seq} for n in names},
                external_data=False, verbose=False,
            )
        except Exception as e:  # the exporter raises many types for unsupported models
            raise UserError(f"torch.onnx cannot export this model ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:200]}).",
                              "use a torch scheme (dynamic-int8) for this model.") from e
        expected = wrapper(**sample)
    got = OnnxModel(path)(**sample)
    err = float((getattr(got, output) - expected).abs().max())
    if not err < EXPORT_TOLERANCE:
        raise UserError(f"The ONNX export of this model is wrong (max error {err:.3g} vs torch).",
                          "use a torch scheme (dynamic-int8) for this model.")


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Raise one logger's level to ERROR for the duration (and put it back)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _module_of_nodes(path: Path) -> dict[str, str]:
    """ONNX node name -> name of the torch module that emitted it (from the exporter's metadata)."""
    import onnx

    out: dict[str, str] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = meta.get("pkg.torch.onnx.name_scopes")
        if not scopes:
            continue
        parts = [s for s in ast.literal_eval(scopes) if s.startswith(_SCOPE)]
        if parts:
            out[node.name] = parts[-1][len(_SCOPE):]
    return out


def _optimize(path: Path, out: Path, model_type: str) -> bool:
    """Fuse LayerNorm, skip connections and GELU for BERT-like encoders; False if not applicable."""
    if model_type not in _FUSABLE:
        return False
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet("onnxruntime.transformers"):
        optimized = optimize_model(str(path), model_type="bert", num_heads=0, hidden_size=0, opt_level=1)
    optimized.save_model_to_file(str(out))
    return True


def _calibration_reader(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], names: list[str],
                        max_length: int) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):  # one text per batch: no padding to skew the ranges
        def __init__(self) -> None:
            self.items: Iterator[dict[str, np.ndarray]] = (
                {n: enc[n].astype(np.int64) for n in names}
                for enc in (tokenizer([t], truncation=True, max_length=max_length, return_tensors="np")
                            for t in texts)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    return Reader()


def apply_onnx(model: nn.Module, tokenizer: PreTrainedTokenizerBase, task: str, config: OnnxConfig,
               calibration: Sequence[str] = ()) -> tuple[OnnxModel, dict[str, Any]]:
    """Export (and quantize) into a fresh temp folder holding model.onnx and config.json."""
    if isinstance(config, CalibratedInt8Config):
        calibration = list(calibration) or list(config.calibration)
        if not calibration:
            raise UserError(f"{config.scheme} needs calibration texts.",
                              "pass calibration=[...] (100 or so typical inputs) to quantize().")
    folder = Path(tempfile.mkdtemp(prefix=f"infopt-{config.scheme}-"))
    try:
        info = _build(model, tokenizer, task, config, calibration, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return OnnxModel(folder / "model.onnx"), info


def _build(model: nn.Module, tokenizer: PreTrainedTokenizerBase, task: str, config: OnnxConfig,
           calibration: Sequence[str], folder: Path) -> dict[str, Any]:
    work = folder / "work"
    work.mkdir()
    raw = work / "export.onnx"
    info: dict[str, Any] = {}
    if isinstance(config, OnnxSmoothInt8Config):
        from infopt.compress.quantize._smooth import smooth_linears

        chosen = smooth_linears(model, tokenizer, calibration, config.alphas, config.exclude, config.max_length,
                                weight_max=64 if config.reduce_range else 127)
        picked = list(chosen.values())
        info["smoothing"] = {"off" if a is None else str(a): picked.count(a) for a in (None, *config.alphas)}
    if isinstance(config, CalibratedInt8Config):
        digest = hashlib.sha256("\n".join(calibration).encode()).hexdigest()[:16]
        info["calibration"] = {"texts": len(calibration), "sha256": digest}
    export_onnx(model, tokenizer, task, raw, config.opset)
    graph = raw
    if config.optimize and _optimize(raw, work / "fused.onnx", getattr(model.config, "model_type", "")):
        graph = work / "fused.onnx"
        info["fused"] = True
    final = folder / "model.onnx"
    if isinstance(config, OnnxFp32Config):
        shutil.copyfile(graph, final)
    else:
        info.update(_quantize_onnx(graph, raw, final, tokenizer, config, calibration))
    model.config.save_pretrained(folder)  # type: ignore[union-attr,operator]
    shutil.rmtree(work, ignore_errors=True)
    return info


DynamicConfig = OnnxInt8Config | OnnxInt8VnniConfig | Emb4Config | OnnxSmoothInt8Config
"""The schemes that run ORT's `quantize_dynamic` (onnx-smooth-int8 after smoothing the torch model)."""
Int8Config = DynamicConfig | OnnxStaticInt8Config | OnnxBlockInt8Config
"""The ONNX schemes that quantize the exported graph."""


def _quantize_onnx(graph: Path, raw: Path, final: Path, tokenizer: PreTrainedTokenizerBase,
                   config: Int8Config, calibration: Sequence[str]) -> dict[str, Any]:
    modules = _module_of_nodes(raw)
    skip = sorted(node for node, mod in modules.items() if excluded(mod, config.exclude))
    info: dict[str, Any] = {"fp32_nodes": sorted({modules[n] for n in skip})}
    if not isinstance(config, OnnxBlockInt8Config) and not config.reduce_range:
        info["cpu_avx512_vnni"] = bool(torch.cpu._is_vnni_supported())  # full-range weights are exact only with it
    with _quiet(""):  # ORT logs "please consider pre-processing" on the root logger
        if isinstance(config, OnnxBlockInt8Config):
            _quantize_blocks(graph, final, config, skip)
        elif isinstance(config, OnnxStaticInt8Config):
            _quantize_static(graph, final, tokenizer, config, calibration, _common(config, skip))
        elif isinstance(config, Emb4Config):
            info.update(_quantize_emb4(graph, final, config, skip))
        else:  # onnx-int8, onnx-int8-vnni, and onnx-smooth-int8 after smoothing the torch model
            from onnxruntime.quantization import quantize_dynamic

            quantize_dynamic(str(graph), str(final), **_common(config, skip))
    return info


def _quantize_emb4(graph: Path, final: Path, config: Emb4Config, skip: list[str]) -> dict[str, Any]:
    """`quantize_dynamic` with the word-embedding Gather left out, then that Gather in 4 bits."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    from infopt.compress.quantize._emb4 import replace_word_gather, word_gather

    word = word_gather(onnx.load(str(graph), load_external_data=False))
    if word is None:
        raise NotApplicable(f"{config.scheme}: the exported graph has no Gather of input_ids from a constant table.",
                            "use onnx-int8 (or onnx-int8-vnni) for this model.")
    if word in skip:  # the user kept the word embedding in float32
        quantize_dynamic(str(graph), str(final), **_common(config, skip))
        return {"word_embedding": {"bits": 32}}
    int8 = graph.parent / "int8.onnx"
    quantize_dynamic(str(graph), str(int8), **_common(config, [*skip, word]))
    return replace_word_gather(int8, final, word, config.embedding_block_size)


def _common(config: DynamicConfig | OnnxStaticInt8Config, skip: list[str]) -> dict[str, Any]:
    """The options `quantize_dynamic` and `quantize_static` share."""
    from onnxruntime.quantization import QuantType

    ops = ["MatMul", "Gather"] if config.embeddings else ["MatMul"]
    return dict(
        per_channel=config.per_channel, reduce_range=config.reduce_range, weight_type=QuantType.QInt8,
        op_types_to_quantize=ops, nodes_to_exclude=skip, extra_options={"MatMulConstBOnly": True},
    )


def _quantize_static(graph: Path, final: Path, tokenizer: PreTrainedTokenizerBase, config: OnnxStaticInt8Config,
                     calibration: Sequence[str], common: dict[str, Any]) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    names = [n for n in ONNX_INPUTS if n in {i.name for i in OnnxModel(graph).session.get_inputs()}]
    fmt = QuantFormat.QOperator if config.quant_format == "qoperator" else QuantFormat.QDQ
    reader = _calibration_reader(tokenizer, calibration, names, config.max_length)
    quantize_static(str(graph), str(final), reader, quant_format=fmt, activation_type=QuantType.QUInt8, **common)


def _quantize_blocks(graph: Path, final: Path, config: OnnxBlockInt8Config, skip: list[str]) -> None:
    """MatMul weights to int8 MatMulNBits (accuracy level 4: int8 activations per block), then embeddings."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(graph)), bits=8, block_size=config.block_size, is_symmetric=True,
                                     accuracy_level=4, nodes_to_exclude=skip)
    quantizer.process()
    blocks = graph.parent / "blocks.onnx" if config.embeddings else final
    quantizer.model.save_model_to_file(str(blocks), use_external_data_format=False)
    if config.embeddings:
        quantize_dynamic(str(blocks), str(final), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["Gather"], nodes_to_exclude=skip)
