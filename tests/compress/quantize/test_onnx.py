"""The onnx-* schemes on the tiny BERT models (each export takes a few seconds)."""

from __future__ import annotations

import onnx
import pytest
import torch

from infopt.compress.quantize import config_from_name, quantize, sqnr
from infopt.errors import InfoptError
from infopt.models import LoadedModel, OnnxModel

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
