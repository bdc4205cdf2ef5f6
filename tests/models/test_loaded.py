"""LoadedModel.num_parameters: torch modules count parameters and buffers, ONNX graphs their initializers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from infopt.models import LoadedModel, Manifest, OnnxModel, load_model, save_model
from infopt.models._onnx import count_initializers


def _graph(path: Path) -> None:
    """A Gather of 4-bit codes (10 x 8 values in 10 x 4 bytes), a float MatMul and an int64 shape constant."""
    inits = [
        numpy_helper.from_array(np.zeros((10, 4), np.uint8), "codes"),
        numpy_helper.from_array(np.ones((10, 1), np.float32), "scales"),
        numpy_helper.from_array(np.ones((8, 3), np.float32), "w"),
        numpy_helper.from_array(np.array([1, -1, 3], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("GatherBlockQuantized", ["codes", "input_ids", "scales"], ["emb"], domain="com.microsoft",
                         gather_axis=0, quantize_axis=1, block_size=16, bits=4),
        helper.make_node("MatMul", ["emb", "w"], ["y"]),
        helper.make_node("Reshape", ["y", "shape"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, None])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, None, 3])], inits)
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=9)
    onnx.save(model, str(path))


def test_initializers_are_counted_with_4_bit_codes_unpacked(tmp_path: Path) -> None:
    _graph(tmp_path / "model.onnx")
    assert count_initializers(tmp_path / "model.onnx") == 80 + 10 + 24 + 3
    session = OnnxModel(tmp_path / "model.onnx")
    assert session.num_parameters() == 117
    import torch

    out = session(input_ids=torch.tensor([[0, 9]]))  # the graph is real: ONNX Runtime runs it
    assert out.logits.shape == (1, 2, 3)


def test_an_onnx_export_has_the_parameters_of_its_torch_model(tiny_bert_classifier: LoadedModel,
                                                              tmp_path: Path) -> None:
    from infopt.compress.quantize import quantize

    torch_count = tiny_bert_classifier.num_parameters()
    exported = quantize(tiny_bert_classifier, "onnx-fp32")
    assert isinstance(exported.model, OnnxModel)
    # the exporter drops the unused position_ids buffer and adds small shape constants
    assert abs(exported.num_parameters() - torch_count) < 0.001 * torch_count
    save_model(exported, tmp_path / "onnx")
    assert load_model(tmp_path / "onnx").num_parameters() == exported.num_parameters()


def test_other_models_count_zero(tokenizer) -> None:  # type: ignore[no-untyped-def]
    assert LoadedModel(object(), tokenizer, Manifest(name="x", task="embedding")).num_parameters() == 0


@pytest.mark.slow
def test_the_real_teacher_as_onnx_int8_counts_22_7m() -> None:
    from infopt.compress.quantize import quantize

    teacher = load_model("minilm-l6-rt")
    q = quantize(teacher, "onnx-int8")
    assert 22.5e6 < teacher.num_parameters() < 23e6
    assert abs(q.num_parameters() - teacher.num_parameters()) < 0.01 * teacher.num_parameters()


@pytest.mark.parametrize("side", ["right", "left"])
def test_encode_gives_the_tokenizers_own_padded_batch(tokenizer: object, side: str) -> None:
    import copy

    import torch

    from infopt.models import Manifest as M

    tok = copy.deepcopy(tokenizer)
    tok.padding_side = side  # type: ignore[attr-defined]
    model = LoadedModel(None, tok, M(name="t", task="classification"))  # type: ignore[arg-type]
    batches = [["a tender, funny film"], ["", "ünïcödé ✓ and emoji 🎬", "word " * 300],
               ["short", "a somewhat longer sentence, with punctuation!", "x"]]
    for texts in batches:
        for max_length in (8, 128):
            want = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")  # type: ignore[operator]
            got = model.encode(texts, max_length)
            assert set(got) == set(want), texts
            for key in want:
                assert torch.equal(got[key], want[key]), (texts, max_length, key)
    slow = LoadedModel(None, type("Slow", (), {"is_fast": False, "__call__": lambda self, t, **k: {"slow": t}})(),
                       M(name="t", task="classification"))  # type: ignore[arg-type]
    assert slow.encode(["a"]) == {"slow": ["a"]}  # no fast backend: the tokenizer's own call
