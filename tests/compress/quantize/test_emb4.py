"""4-bit word embeddings (GatherBlockQuantized) and full-range int8 weights (onnx-int8-vnni) on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from infopt.compress.quantize import config_from_name, quantize, sqnr
from infopt.compress.quantize._emb4 import dequantize_4bit, quantize_4bit, replace_word_gather, word_gather
from infopt.models import LoadedModel

from .conftest import assert_same_outputs


def _gather_graph(weight: np.ndarray, path: Path) -> None:
    node = helper.make_node("Gather", ["table", "input_ids"], ["out"], name="lookup")
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None, None])
    graph = helper.make_graph([node], "g", [ids],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, None, weight.shape[1]])],
                              [numpy_helper.from_array(weight, "table")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))


@pytest.mark.parametrize(("dim", "block"), [(64, 32), (96, 32), (64, 16), (128, 128)])
def test_onnx_runtime_reads_the_codes_as_written(tmp_path: Path, dim: int, block: int) -> None:
    """The real CPU kernel against the numpy reference (odd block counts pad the zero points)."""
    weight = np.random.default_rng(0).standard_normal((50, dim)).astype(np.float32)
    _gather_graph(weight, tmp_path / "g.onnx")
    assert word_gather(onnx.load(str(tmp_path / "g.onnx"))) == "lookup"
    info = replace_word_gather(tmp_path / "g.onnx", tmp_path / "q.onnx", "lookup", block)
    model = onnx.load(str(tmp_path / "q.onnx"))
    assert [n.op_type for n in model.graph.node] == ["GatherBlockQuantized"]
    assert "table" not in {i.name for i in model.graph.initializer}
    blocks = dim // block  # half a byte per entry, a float32 scale and half a byte of zero point per block
    assert info["word_embedding"]["bytes"] == 50 * (dim // 2 + 4 * blocks + (blocks + 1) // 2)
    ids = np.array([[0, 3, 49], [7, 7, 1]], dtype=np.int64)
    got = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input_ids": ids})[0]
    packed, scales, zeros = quantize_4bit(weight, block)
    reference = dequantize_4bit(packed, scales, zeros, block)
    np.testing.assert_allclose(got, reference[ids], rtol=0, atol=1e-6)
    step = (np.ptp(weight.reshape(50, -1, block), axis=-1) / 15).max()
    assert np.abs(reference - weight).max() <= step  # within one quantization step of the floats


def test_a_width_the_block_does_not_divide_is_refused(tmp_path: Path) -> None:
    _gather_graph(np.ones((4, 48), np.float32), tmp_path / "g.onnx")
    with pytest.raises(Exception, match="not a multiple of embedding_block_size 32"):
        replace_word_gather(tmp_path / "g.onnx", tmp_path / "q.onnx", "lookup", 32)


def test_emb4_stores_the_word_embedding_in_4_bits(tiny_bert_classifier: LoadedModel, roundtrip,  # type: ignore[no-untyped-def]
                                                  texts: list[str]) -> None:
    int8 = quantize(tiny_bert_classifier, "onnx-int8")
    q = quantize(tiny_bert_classifier, "onnx-int8-emb4")
    assert q.manifest.method == "quantize:onnx-int8-emb4"
    ops = [n.op_type for n in onnx.load(str(q.model.path)).graph.node]
    assert ops.count("GatherBlockQuantized") == 1 and "MatMulInteger" in ops
    assert ops.count("Gather") == int8_ops(int8).count("Gather") - 1  # position / token-type tables stay int8
    # the word embedding is 30,522 x 32 of the tiny model's ~1M parameters; at this width a row takes 21 bytes in
    # 4 bits (16 of codes, a scale, a zero point) against 32 in int8: measured 0.34 MB off the 1.03 MB int8 file
    assert q.model.path.stat().st_size < int8.model.path.stat().st_size - 0.3e6
    assert sqnr(tiny_bert_classifier.predict(texts), q.predict(texts)) > 15.0  # measured 20.8 dB (int8: 31)
    assert q.manifest.metrics["quantize"]["word_embedding"]["bits"] == 4
    assert_same_outputs(q, roundtrip(q), texts)


def int8_ops(model: LoadedModel) -> list[str]:
    return [n.op_type for n in onnx.load(str(model.model.path)).graph.node]


def test_an_excluded_word_embedding_stays_float(tiny_bert_classifier: LoadedModel) -> None:
    config = config_from_name("onnx-int8-emb4", exclude=("bert.embeddings.word_embeddings",))
    q = quantize(tiny_bert_classifier, config)
    assert "GatherBlockQuantized" not in int8_ops(q)
    assert q.manifest.metrics["quantize"]["word_embedding"] == {"bits": 32}


def _int8_weights(model: LoadedModel) -> list[np.ndarray]:
    graph = onnx.load(str(model.model.path)).graph
    b_inputs = {n.input[1] for n in graph.node if n.op_type == "MatMulInteger"}
    return [numpy_helper.to_array(i) for i in graph.initializer if i.name in b_inputs]


def test_vnni_keeps_all_8_bits_of_the_weights(tiny_bert_classifier: LoadedModel, texts: list[str]) -> None:
    seven = quantize(tiny_bert_classifier, "onnx-int8")
    full = quantize(tiny_bert_classifier, "onnx-int8-vnni")
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in _int8_weights(seven)) <= 64
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in _int8_weights(full)) == 127
    vnni = full.manifest.metrics["quantize"]["cpu_avx512_vnni"]
    assert vnni is bool(torch.cpu._is_vnni_supported())
    if vnni:  # without VNNI, ORT's int16 pair sums saturate on full-range weights: the reason onnx-int8 has 7 bits
        ref = tiny_bert_classifier.predict(texts)
        assert sqnr(ref, full.predict(texts)) > sqnr(ref, seven.predict(texts)) + 3.0  # measured 43.6 vs 31.0 dB
    assert "cpu_avx512_vnni" not in seven.manifest.metrics["quantize"]
