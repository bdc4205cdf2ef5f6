"""4-bit word embeddings in an ONNX graph: its Gather becomes com.microsoft GatherBlockQuantized.

Asymmetric uint4 per block of `block_size` entries along the hidden dimension: `w = (q - zero) * scale`, q and
zero in 0..15, two codes per byte (low nibble first, the layout ONNX Runtime's CPU kernel reads with `bits=4`);
float32 scales, one per block. Only the looked-up rows are dequantized, at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from infopt.errors import NotApplicable

__all__ = ["dequantize_4bit", "quantize_4bit", "replace_word_gather", "word_gather"]

MS_DOMAIN = "com.microsoft"


def word_gather(model: Any, input_name: str = "input_ids") -> str | None:
    """Name of the Gather that looks `input_name` up in a constant [vocab, hidden] table, or None."""
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if (node.op_type == "Gather" and node.domain in ("", "ai.onnx") and len(node.input) == 2
                and node.input[1] == input_name and node.input[0] in inits
                and len(inits[node.input[0]].dims) == 2):
            return str(node.name)
    return None


def _pack(codes: np.ndarray) -> np.ndarray:
    """[R, C] uint8 codes in 0..15 -> [R, ceil(C / 2)] bytes, element 2i in the low nibble (odd C: zero-padded)."""
    if codes.shape[1] % 2:
        codes = np.concatenate([codes, np.zeros((codes.shape[0], 1), np.uint8)], axis=1)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)


def quantize_4bit(weight: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[V, D] float -> (packed codes [V, D/2], scales [V, D/block] float32, packed zero points [V, ceil(blocks/2)])."""
    rows, dim = weight.shape
    blocks = weight.astype(np.float32).reshape(rows, dim // block_size, block_size)
    lo = np.minimum(blocks.min(-1, keepdims=True), 0.0)  # the range holds 0, so zero is exact
    hi = np.maximum(blocks.max(-1, keepdims=True), 0.0)
    scale = np.maximum((hi - lo) / 15.0, 1e-12).astype(np.float32)
    zero = np.clip(np.round(-lo / scale), 0, 15)
    codes = np.clip(np.round(blocks / scale) + zero, 0, 15).astype(np.uint8).reshape(rows, dim)
    return _pack(codes), scale.reshape(rows, -1), _pack(zero.astype(np.uint8).reshape(rows, -1))


def dequantize_4bit(packed: np.ndarray, scales: np.ndarray, zeros: np.ndarray, block_size: int) -> np.ndarray:
    """Inverse of `quantize_4bit` (the reference the ONNX Runtime kernel is tested against)."""
    codes = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(packed.shape[0], -1).astype(np.float32)
    nblocks = scales.shape[1]
    zero = np.stack([zeros & 0x0F, zeros >> 4], axis=-1).reshape(zeros.shape[0], -1)[:, :nblocks]
    blocks = codes.reshape(codes.shape[0], nblocks, block_size)
    return ((blocks - zero[..., None]) * scales[..., None]).reshape(codes.shape[0], -1)


def replace_word_gather(path: Path, out: Path, node_name: str, block_size: int) -> dict[str, Any]:
    """Rewrite the Gather `node_name` of the graph in `path` as GatherBlockQuantized; write `out`; what was done."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    node = next(n for n in graph.node if n.name == node_name)
    init = next(i for i in graph.initializer if i.name == node.input[0])
    weight = numpy_helper.to_array(init)
    rows, dim = weight.shape
    if dim % block_size:
        raise NotApplicable(f"The word embedding has {dim} entries per row, not a multiple of embedding_block_size "
                            f"{block_size}.", "pass an embedding_block_size that divides it (16 always fits BERT).")
    packed, scales, zeros = quantize_4bit(weight, block_size)
    base = init.name
    tensors = [numpy_helper.from_array(packed, f"{base}_q4"), numpy_helper.from_array(scales, f"{base}_q4_scales"),
               numpy_helper.from_array(zeros, f"{base}_q4_zero_points")]
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    new = helper.make_node("GatherBlockQuantized", [tensors[0].name, node.input[1], tensors[1].name, tensors[2].name],
                           list(node.output), name=f"{node.name}_q4", domain=MS_DOMAIN, gather_axis=axis,
                           quantize_axis=1, block_size=block_size, bits=4)
    position = list(graph.node).index(node)
    graph.node.remove(node)
    graph.node.insert(position, new)
    if not any(base in n.input for n in graph.node):
        graph.initializer.remove(init)
    graph.initializer.extend(tensors)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    onnx.save(model, str(out))
    return {"word_embedding": {"bits": 4, "block_size": block_size, "rows": int(rows), "dim": int(dim),
                               "bytes": int(packed.nbytes + scales.nbytes + zeros.nbytes),
                               "float32_bytes": int(weight.astype(np.float32).nbytes)}}
