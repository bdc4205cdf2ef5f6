"""An ONNX Runtime session that is called like a Hugging Face model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

__all__ = ["OnnxModel"]


class OnnxModel:
    """Wraps `model.onnx`; `model(input_ids=..., attention_mask=...)` returns `.logits` or `.last_hidden_state`."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, **inputs: Any) -> SimpleNamespace:
        feed = {n: np.ascontiguousarray(inputs[n].numpy(), dtype=np.int64) for n in self.input_names if n in inputs}
        if "token_type_ids" in self.input_names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        out = torch.from_numpy(self.session.run([self.output_name], feed)[0])
        return SimpleNamespace(**{self.output_name: out})

    def eval(self) -> OnnxModel:
        return self
