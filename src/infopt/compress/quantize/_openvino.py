"""The `openvino*` schemes: ov.convert_model from the torch model, NNCF int8 for the int8 ones, the CPU plugin.

`OpenVinoModel` is the compiled model, called like a Hugging Face one (as `OnnxModel` is); the folder format that
saves it is `_openvino_format.py`. OpenVINO and NNCF are optional (`pip install 'infopt[openvino]'`) and imported
only here, when a scheme is built or a folder is loaded.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig

from infopt.compress.quantize._configs import (
    OpenVinoConfig,
    OpenVinoInt8Bf16Config,
    OpenVinoInt8Config,
    uses_calibration,
)
from infopt.compress.quantize._modules import excluded
from infopt.compress.quantize._onnx import TASK_OUTPUTS, TaskOutput, export_inputs, sample_inputs
from infopt.errors import MissingDependency, NotApplicable, UserError
from infopt.models import LoadedModel

__all__ = ["MODEL_XML", "OUTPUTS", "OpenVinoModel", "apply_openvino", "core", "count_constants", "cpu_capabilities",
           "import_openvino"]

MODEL_XML = "model.xml"
"""The IR's graph; its weights are beside it in model.bin."""
OUTPUTS = TASK_OUTPUTS
"""The task's one output, as the model returns it (the ONNX schemes' own)."""
CONVERT_TOLERANCE = 1e-3
"""Largest difference from torch allowed on the sample texts after conversion (float32, f32 hint)."""
_INSTALL = "pip install 'infopt[openvino]' (or pip install openvino nncf)."
_WRAPPER = "model."
"""Prefix of the torch module names inside `_Export` (OpenVINO names ops `__module.<module name>/...`)."""


def import_openvino() -> ModuleType:
    """The `openvino` package; MissingDependency naming the extra if it is not installed."""
    try:
        import openvino
    except ImportError:
        raise MissingDependency("OpenVINO is not installed, so the openvino* schemes cannot run.", _INSTALL) from None
    return openvino


def _import_nncf() -> ModuleType:
    import_openvino()
    try:
        import nncf
    except ImportError:
        raise MissingDependency("NNCF is not installed, so the openvino-int8 schemes cannot run.", _INSTALL) from None
    return nncf


@functools.cache
def core() -> Any:
    """The one `ov.Core` of this process, shared by every model: with a Core per model, destroying two of them
    (an f32 and a bf16 model) left the CPU plugin in a state where the next SIGINT crashed the process (OpenVINO
    2026.4, AMX Xeon)."""
    return import_openvino().Core()


def cpu_capabilities() -> list[str]:
    """OPTIMIZATION_CAPABILITIES of OpenVINO's CPU plugin on this machine (e.g. FP32, INT8, BF16)."""
    return [str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def count_constants(model: Any) -> int:
    """Elements of every Constant of an `ov.Model` (weights, scales, zero points, small constants); int8 weights
    count one each, as the parameters they stand for."""
    total = 0
    for op in model.get_ops():
        if op.get_type_name() == "Constant":
            total += int(np.prod(list(op.get_output_shape(0)), dtype=np.int64))
    return total


class OpenVinoModel:
    """`model.xml` compiled for the CPU; `model(input_ids=..., attention_mask=...)` returns `.logits` or
    `.last_hidden_state` (torch tensors in and out, dynamic batch and sequence)."""

    def __init__(self, path: str | Path, precision_hint: str = "f32", threads: int | None = None,
                 output: str | None = None, config: PretrainedConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config  # the Hugging Face config it was converted from (position limit, labels), if known
        self.precision_hint = precision_hint
        self.threads = threads or torch.get_num_threads()
        model = core().read_model(self.path)
        self._parameters = count_constants(model)
        self.compile_config = {"INFERENCE_PRECISION_HINT": precision_hint, "INFERENCE_NUM_THREADS": self.threads,
                               "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core().compile_model(model, "CPU", self.compile_config)
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.output_name = output or self.compiled.output(0).get_any_name()
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns

    def with_threads(self, threads: int) -> OpenVinoModel:
        """The same IR compiled again with `threads` inference threads."""
        return OpenVinoModel(self.path, self.precision_hint, threads, self.output_name, self.config)

    def num_parameters(self) -> int:
        """Elements of the IR's constants (see `count_constants`), counted when it was read."""
        return self._parameters

    def __call__(self, **inputs: Any) -> SimpleNamespace:
        feed = {n: np.ascontiguousarray(inputs[n].numpy(), dtype=np.int64) for n in self.input_names if n in inputs}
        if "token_type_ids" in self.input_names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        with self._lock:
            result = self._request.infer(feed)
            out = torch.from_numpy(np.array(result[self.compiled.output(0)], dtype=np.float32))  # a copy
        return SimpleNamespace(**{self.output_name: out})

    def eval(self) -> OpenVinoModel:
        return self


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """NNCF's and OpenVINO's INFO logs and conversion warnings off for the duration."""
    loggers = [logging.getLogger(n) for n in ("nncf", "openvino")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _convert(module: nn.Module, loaded: LoadedModel, output: str) -> Any:
    """The torch model as an `ov.Model` with dynamic batch and sequence; UserError if OpenVINO cannot convert it
    or its float32 output differs from torch's on two sample texts."""
    ov = import_openvino()
    names = export_inputs(module, loaded.tokenizer)
    sample = sample_inputs(loaded.tokenizer, names)
    wrapper = TaskOutput(module, output).eval()
    with torch.no_grad(), _quiet():
        try:
            model = ov.convert_model(wrapper, example_input=sample)
        except Exception as e:  # the converter raises many types for unsupported models
            raise UserError(f"OpenVINO cannot convert this model ({type(e).__name__}: "
                            f"{(str(e).splitlines() or [''])[0][:200]}).",
                            "use an onnx-* or torch scheme (dynamic-int8) for this model.") from None
        expected = wrapper(**sample)
    for i, n in enumerate(names):
        model.inputs[i].get_tensor().set_names({n})
    model.outputs[0].get_tensor().set_names({output})
    compiled = core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled.create_infer_request().infer({n: t.numpy() for n, t in sample.items()})[compiled.output(0)]
    err = float(np.abs(np.asarray(got) - expected.numpy()).max())
    if not err < CONVERT_TOLERANCE:
        raise UserError(f"The OpenVINO conversion of this model is wrong (max error {err:.3g} vs torch).",
                        "use an onnx-* or torch scheme (dynamic-int8) for this model.")
    return model


def _module_of(op_name: str) -> str | None:
    """`__module.model.bert.encoder.layer.0.output.dense/aten::linear/MatMul` -> `bert.encoder.layer.0.output.dense`."""
    head = op_name.split("/", 1)[0]
    if not head.startswith("__module."):
        return None
    name = head[len("__module."):]
    return name[len(_WRAPPER):] if name.startswith(_WRAPPER) else None


def _ignored(model: Any, patterns: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(MatMul op names of the excluded modules, those modules) for NNCF's ignored scope."""
    ops, modules = [], set()
    for op in model.get_ops():
        module = _module_of(op.get_friendly_name())
        if op.get_type_name() == "MatMul" and module is not None and excluded(module, patterns):
            ops.append(op.get_friendly_name())
            modules.add(module)
    return ops, sorted(modules)


def _quantize_int8(model: Any, loaded: LoadedModel, config: OpenVinoInt8Config | OpenVinoInt8Bf16Config,
                   texts: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    """NNCF post-training int8 (ModelType.TRANSFORMER) calibrated on `texts`, one text per batch (no padding)."""
    nncf = _import_nncf()
    names = [i.get_any_name() for i in model.inputs]
    items = []
    for text in texts[: config.calibration_size]:
        enc = loaded.tokenizer([text], truncation=True, max_length=config.max_length, return_tensors="np")
        item = {n: enc[n].astype(np.int64) for n in names if n in enc}
        if "token_type_ids" in names and "token_type_ids" not in item:
            item["token_type_ids"] = np.zeros_like(item["input_ids"])
        items.append(item)
    ops, modules = _ignored(model, config.exclude)
    scope = nncf.IgnoredScope(names=ops, validate=False) if ops else None
    with _quiet(), contextlib.redirect_stdout(io.StringIO()):  # NNCF's rich progress bars print to stdout
        quantized = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(items), ignored_scope=scope)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    int8 = sum(1 for op in quantized.get_ops()
               if op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() in ("i8", "u8"))
    info = {"nncf": str(nncf.__version__), "calibration": {"texts": len(items), "sha256": digest},
            "fp32_modules": modules, "int8_constants": int8}
    return quantized, info


def _check_bf16(config: OpenVinoConfig) -> dict[str, Any]:
    if config.precision_hint != "bf16":
        return {}
    caps = cpu_capabilities()
    if "BF16" not in caps:
        raise NotApplicable(f"{config.scheme} needs bf16 in OpenVINO's CPU plugin, which this CPU does not offer "
                            f"(OPTIMIZATION_CAPABILITIES: {', '.join(caps) or 'none'}).",
                            "use openvino or openvino-int8 here; bf16 needs AMX or AVX-512 BF16.")
    return {"cpu_bf16": True}


def apply_openvino(loaded: LoadedModel, config: OpenVinoConfig,
                   calibration: Sequence[str] = ()) -> tuple[OpenVinoModel, dict[str, Any]]:
    """Convert (and quantize) `loaded`'s torch module into a fresh temp folder holding model.xml, model.bin and
    config.json; (the compiled model, what was done)."""
    module = loaded.model
    if not isinstance(module, nn.Module):
        raise NotApplicable(f"{config.scheme} converts a PyTorch model; this one is {type(module).__name__} "
                            f"(format {loaded.manifest.format!r}).", "convert from the torch model it was made from.")
    if loaded.task not in OUTPUTS:
        raise NotApplicable(f"Scheme {config.scheme!r} supports classification and embedding models, not "
                            f"{loaded.task}.", "use a torch scheme (weight-int8, dynamic-int8, torch-bf16).")
    if uses_calibration(config) and not calibration:
        raise UserError(f"{config.scheme} needs calibration texts.",
                        "pass calibration=[...] (100 or so typical inputs) to quantize().")
    ov = import_openvino()
    info: dict[str, Any] = {"openvino": str(ov.__version__), "precision_hint": config.precision_hint,
                            **_check_bf16(config)}
    model = _convert(module.eval(), loaded, OUTPUTS[loaded.task])
    if isinstance(config, OpenVinoInt8Config | OpenVinoInt8Bf16Config):
        model, done = _quantize_int8(model, loaded, config, list(calibration))
        info.update(done)
    model.set_rt_info(config.precision_hint, ["runtime_options", "INFERENCE_PRECISION_HINT"])  # in model.xml too
    folder = Path(tempfile.mkdtemp(prefix=f"infopt-{config.scheme}-"))
    try:
        ov.save_model(model, str(folder / MODEL_XML), compress_to_fp16=False)
        module.config.save_pretrained(folder)  # type: ignore[union-attr,operator]
        compiled = OpenVinoModel(folder / MODEL_XML, config.precision_hint, config.threads, OUTPUTS[loaded.task],
                                 module.config)  # type: ignore[arg-type]
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return compiled, info
