"""An ONNX Runtime session that is called like a Hugging Face model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

__all__ = ["OnnxModel", "count_initializers"]

_PACKED = {"GatherBlockQuantized": 0, "MatMulNBits": 1}
"""Ops whose weight input packs several low-bit codes per uint8 (the input's index); `bits` says how many."""


def count_initializers(path: str | Path) -> int:
    """Elements of every initializer of the graph in `path` (weights, scales, zero points, small constants).

    uint8 weights that pack 4-bit codes (GatherBlockQuantized, MatMulNBits) count one per code, as the
    parameters they stand for; external data is not read (only the shapes are needed).
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    sizes = {t.name: (int(np.prod(t.dims, dtype=np.int64)), t.data_type) for t in graph.initializer}
    sizes.update({t.values.name: (int(np.prod(t.dims, dtype=np.int64)), t.values.data_type)
                  for t in graph.sparse_initializer})
    factor: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in _PACKED and node.domain == "com.microsoft" and len(node.input) > _PACKED[node.op_type]:
            bits = next((a.i for a in node.attribute if a.name == "bits"), 4)
            name = node.input[_PACKED[node.op_type]]
            if name in sizes and sizes[name][1] == onnx.TensorProto.UINT8 and bits in (2, 4):
                factor[name] = 8 // bits
    return sum(n * factor.get(name, 1) for name, (n, _) in sizes.items())


class OnnxModel:
    """Wraps `model.onnx`; `model(input_ids=..., attention_mask=...)` returns `.logits` or `.last_hidden_state`."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.threads = threads or torch.get_num_threads()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        self._parameters: int | None = None

    def with_threads(self, threads: int) -> OnnxModel:
        """The same graph in a new session with `threads` intra-op threads."""
        return OnnxModel(self.path, threads)

    def num_parameters(self) -> int:
        """Elements of the graph's initializers (see `count_initializers`), counted once and remembered."""
        if self._parameters is None:
            self._parameters = count_initializers(self.path)
        return self._parameters

    def __call__(self, **inputs: Any) -> SimpleNamespace:
        out = torch.from_numpy(self.run(**{k: v.numpy() for k, v in inputs.items()}))
        return SimpleNamespace(**{self.output_name: out})

    def run(self, **inputs: np.ndarray) -> np.ndarray:
        """The output for numpy inputs (no torch on the way: what a latency-bound caller uses)."""
        feed = {n: np.ascontiguousarray(inputs[n], dtype=np.int64) for n in self.input_names if n in inputs}
        if "token_type_ids" in self.input_names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        return self.session.run([self.output_name], feed)[0]

    def eval(self) -> OnnxModel:
        return self
