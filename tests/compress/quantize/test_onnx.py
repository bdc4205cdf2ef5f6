"""The onnx-* schemes on the tiny BERT models (each export takes a few seconds)."""

from __future__ import annotations

import copy
from pathlib import Path

import onnx
import pytest
import torch

from infopt.compress.quantize import config_from_name, quantize, sqnr
from infopt.compress.quantize._smooth import (
    SmoothedLinear,
    _calls,
    fake_dynamic_int8,
    input_absmax,
    smooth_linears,
)
from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.errors import InfoptError
from infopt.evaluate import predict_logits
from infopt.models import LoadedModel, OnnxModel, load_model

from .conftest import assert_same_outputs


def test_fp32_export_matches_torch_for_any_shape(tiny_bert_classifier: LoadedModel, roundtrip,  # type: ignore[no-untyped-def]
                                                 texts: list[str]) -> None:
    q = quantize(tiny_bert_classifier, "onnx-fp32")
    assert isinstance(q.model, OnnxModel)
    assert q.manifest.format == "onnx" and q.manifest.method == "quantize:onnx-fp32"
    assert (q.model.path.parent / "config.json").exists()
    assert q.model.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert q.model.output_name == "logits"
    for batch in (texts[:1], texts, texts * 3):
        assert sqnr(tiny_bert_classifier.predict(batch), q.predict(batch)) > 80.0
    back = roundtrip(q)
    assert back.manifest.format == "onnx"
    assert_same_outputs(q, back, texts)


def test_int8_embedder_is_small_and_close(tiny_bert_embedder: LoadedModel, roundtrip,  # type: ignore[no-untyped-def]
                                          texts: list[str]) -> None:
    fp32 = quantize(tiny_bert_embedder, config_from_name("onnx-fp32", optimize=False))
    q = quantize(tiny_bert_embedder, "onnx-int8")
    assert q.model.output_name == "last_hidden_state"
    assert sqnr(tiny_bert_embedder.predict(texts), q.predict(texts)) > 35.0  # measured 43.6 dB
    size = q.model.path.stat().st_size
    assert size / fp32.model.path.stat().st_size < 0.3  # embeddings (Gather) are int8 too
    assert_same_outputs(q, roundtrip(q), texts)
    no_emb = quantize(tiny_bert_embedder, config_from_name("onnx-int8", embeddings=False, optimize=False))
    assert no_emb.model.path.stat().st_size > 2 * size


def test_block_int8_keeps_activations_close(tiny_bert_classifier: LoadedModel, roundtrip,  # type: ignore[no-untyped-def]
                                            texts: list[str]) -> None:
    q = quantize(tiny_bert_classifier, config_from_name("onnx-block-int8", block_size=16, exclude=("classifier",)))
    ops = {node.op_type for node in onnx.load(str(q.model.path)).graph.node}
    assert "MatMulNBits" in ops and "MatMulInteger" not in ops
    assert q.manifest.metrics["quantize"]["fp32_nodes"] == ["classifier"]
    assert sqnr(tiny_bert_classifier.predict(texts), q.predict(texts)) > 35.0  # measured 49.8 dB
    assert_same_outputs(q, roundtrip(q), texts)
    with pytest.raises(InfoptError, match="block_size"):
        config_from_name("onnx-block-int8", block_size=100)


def test_static_int8(tiny_bert_classifier: LoadedModel, roundtrip, texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    q = quantize(tiny_bert_classifier, "onnx-static-int8", calibration=texts * 4)
    assert sqnr(tiny_bert_classifier.predict(texts), q.predict(texts)) > 35.0  # measured 49 dB
    info = q.manifest.metrics["quantize"]
    assert info["calibration"]["texts"] == 16
    assert "bert.encoder.layer.0.output.dense" in info["fp32_nodes"]
    assert q.manifest.recipe[-1]["config"]["calibration"] == []
    assert_same_outputs(q, roundtrip(q), texts)


def test_static_int8_reads_texts_from_the_config(tiny_bert_embedder: LoadedModel, texts: list[str]) -> None:
    config = config_from_name("onnx-static-int8", calibration=texts, quant_format="qdq", optimize=False)
    q = quantize(tiny_bert_embedder, config)
    assert sqnr(tiny_bert_embedder.predict(texts), q.predict(texts)) > 30.0


def test_static_int8_needs_calibration(tiny_bert_embedder: LoadedModel) -> None:
    with pytest.raises(InfoptError, match="calibration"):
        quantize(tiny_bert_embedder, "onnx-static-int8")


def test_smoothed_linear_moves_the_scale_into_the_weight() -> None:
    torch.manual_seed(0)
    linear, x, scale = torch.nn.Linear(8, 4), torch.randn(3, 8), torch.rand(8) + 0.5
    expected, weight = linear(x), linear.weight.detach().clone()
    smoothed = SmoothedLinear(linear, scale)
    torch.testing.assert_close(smoothed.linear.weight, weight * scale)
    torch.testing.assert_close(smoothed(x), expected)


def test_smoothing_keeps_the_float32_model_exact(tiny_bert_classifier: LoadedModel, texts: list[str]) -> None:
    model = copy.deepcopy(tiny_bert_classifier.model)
    calls = _calls(tiny_bert_classifier.tokenizer, texts, 32)
    assert len(calls) == len(texts) + 1  # each text alone, then one padded batch
    names = ["bert.encoder.layer.0.intermediate.dense"]
    amax = input_absmax(model, calls, names)[names[0]]
    assert amax.shape == (32,) and bool((amax > 0).all())
    chosen = smooth_linears(model, tiny_bert_classifier.tokenizer, texts * 4, (0.75,), ("classifier",), 32)
    assert len(chosen) == 13 and "classifier" not in chosen and set(chosen.values()) <= {None, 0.75}
    smoothed = [n for n, a in chosen.items() if a is not None]
    assert smoothed  # measured: 10 of the 13 layers (with 4 texts or alphas 0.5 / 1.0 none are, and this would be void)
    assert all(isinstance(model.get_submodule(n), SmoothedLinear) for n in smoothed)
    enc = tiny_bert_classifier.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**enc).logits, tiny_bert_classifier.model(**enc).logits)


def test_simulated_int8_matmul_matches_onnx_runtime(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    torch.manual_seed(0)
    weight, x = torch.randn(24, 16), torch.randn(5, 16) * torch.linspace(0.1, 8, 16)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "one-matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 24])],
        [numpy_helper.from_array(weight.T.contiguous().numpy(), "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "f.onnx")
    quantize_dynamic(tmp_path / "f.onnx", tmp_path / "q.onnx", per_channel=True, reduce_range=True,
                     weight_type=QuantType.QInt8)
    got = OnnxModel(tmp_path / "q.onnx").session.run(None, {"x": x.numpy()})[0]
    exact = x @ weight.T
    simulated = fake_dynamic_int8(x, weight, weight_max=64)
    torch.testing.assert_close(torch.from_numpy(got), simulated, rtol=0, atol=1e-4)  # measured 7.6e-6
    assert (simulated - exact).abs().max() > 1e-3  # the simulation does quantize


def test_smooth_int8(tiny_bert_classifier: LoadedModel, roundtrip, texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    config = config_from_name("onnx-smooth-int8", exclude=("classifier",))
    q = quantize(tiny_bert_classifier, config, calibration=texts * 4)
    ops = [node.op_type for node in onnx.load(str(q.model.path)).graph.node]
    assert "MatMulInteger" in ops and "Mul" in ops
    assert sqnr(tiny_bert_classifier.predict(texts), q.predict(texts)) > 25.0  # measured 30.9 dB (onnx-int8: 31.3)
    info = q.manifest.metrics["quantize"]
    assert info["calibration"]["texts"] == 16 and sum(info["smoothing"].values()) == 13
    assert q.manifest.recipe[-1]["config"]["calibration"] == []
    assert_same_outputs(q, roundtrip(q), texts)
    with pytest.raises(InfoptError, match="onnx-smooth-int8 needs calibration"):
        quantize(tiny_bert_classifier, "onnx-smooth-int8")


def test_broken_export_is_caught(tiny_bert_embedder: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    from infopt.compress.quantize import _onnx

    real = _onnx.OnnxModel

    class Wrong(real):  # type: ignore[misc,valid-type]
        def __call__(self, **inputs: torch.Tensor):  # type: ignore[no-untyped-def]
            out = super().__call__(**inputs)
            out.last_hidden_state = out.last_hidden_state + 1.0
            return out

    monkeypatch.setattr(_onnx, "OnnxModel", Wrong)
    with pytest.raises(InfoptError, match="ONNX export"):
        quantize(tiny_bert_embedder, config_from_name("onnx-fp32", optimize=False))


def test_exporter_failure_is_an_infopt_error(tiny_bert_embedder: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator aten::frobnicate\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(InfoptError, match="frobnicate") as err:
        quantize(tiny_bert_embedder, "onnx-int8")
    assert "dynamic-int8" in err.value.fix


# --- on the real bundled models (slow) ---



@pytest.mark.slow
def test_smooth_int8_is_closer_to_the_teacher_than_onnx_int8() -> None:
    splits = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0)
    teacher = load_model("minilm-l6-rt")
    texts = splits.validation.texts[:400]
    ref = predict_logits(teacher, texts)
    plain = predict_logits(quantize(teacher, "onnx-int8"), texts)
    smooth_model = quantize(teacher, "onnx-smooth-int8", calibration=splits.train.texts[:128])
    smooth = predict_logits(smooth_model, texts)
    # measured on these 400 reviews (batches of similar length): onnx-int8 24.2 dB, onnx-smooth-int8 28.7 dB
    assert sqnr(ref, smooth) > sqnr(ref, plain) + 2.0
    assert sum(smooth_model.manifest.metrics["quantize"]["smoothing"].values()) == 38
