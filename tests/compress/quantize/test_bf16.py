"""torch-bf16: the whole model in bfloat16, float32 outputs, excluded modules in float32, saved and reloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from infopt.compress.quantize import TorchBf16Config, quantize, sqnr
from infopt.compress.quantize._bf16 import cast_floats, cpu_bf16_support
from infopt.models import LoadedModel, load_model, save_model

from .conftest import assert_same_outputs


def test_cast_floats_reaches_into_outputs_and_leaves_ids_alone() -> None:
    ids = torch.tensor([[1, 2]])
    out = SequenceClassifierOutput(logits=torch.ones(1, 2, dtype=torch.bfloat16),
                                   hidden_states=(torch.zeros(1, 2, 4, dtype=torch.bfloat16),))
    cast = cast_floats(out, torch.float32)
    assert cast is out and out.logits.dtype == torch.float32 and out["logits"].dtype == torch.float32
    assert out.hidden_states[0].dtype == torch.float32
    assert cast_floats(ids, torch.bfloat16) is ids
    assert cast_floats({"a": [torch.ones(1)]}, torch.bfloat16)["a"][0].dtype == torch.bfloat16


@pytest.mark.parametrize("fixture", ["tiny_bert_classifier", "tiny_bert_embedder"])
def test_everything_is_bf16_but_the_outputs(fixture: str, request: pytest.FixtureRequest, texts: list[str]) -> None:
    model: LoadedModel = request.getfixturevalue(fixture)
    q = quantize(model, "torch-bf16")
    assert {p.dtype for p in q.model.parameters()} == {torch.bfloat16}
    assert next(model.model.parameters()).dtype == torch.float32  # the input is untouched
    out = q.predict(texts)
    assert out.dtype == torch.float32
    assert sqnr(model.predict(texts), out) > 30.0  # bf16 keeps 8 bits of mantissa: measured 46.9 dB
    info = q.manifest.metrics["quantize"]
    assert info["dtype"] == "bfloat16" and info["cpu_bf16"] == cpu_bf16_support()
    assert cpu_bf16_support() in ("amx", "avx512_bf16", "none")


def test_excluded_modules_stay_float32(tiny_bert_classifier: LoadedModel, roundtrip,  # type: ignore[no-untyped-def]
                                       texts: list[str]) -> None:
    q = quantize(tiny_bert_classifier, TorchBf16Config(exclude=("classifier", "bert.pooler")))
    assert q.model.classifier.weight.dtype == torch.float32 and q.model.bert.pooler.dense.weight.dtype == torch.float32
    assert q.model.bert.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16
    assert q.manifest.metrics["quantize"]["float32_modules"] == ["bert.pooler", "classifier"]
    assert q.predict(texts).dtype == torch.float32
    back = roundtrip(q)
    assert back.model.classifier.weight.dtype == torch.float32
    assert_same_outputs(q, back, texts)


def test_the_file_is_half_the_size(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    save_model(tiny_bert_classifier, tmp_path / "fp32")
    save_model(quantize(tiny_bert_classifier, "torch-bf16"), tmp_path / "bf16")
    fp32 = (tmp_path / "fp32" / "model.safetensors").stat().st_size
    bf16 = (tmp_path / "bf16" / "state.pt").stat().st_size
    assert 0.45 < bf16 / fp32 < 0.55
    back = load_model(tmp_path / "bf16")
    assert back.manifest.format == "torch-state" and back.num_parameters() == tiny_bert_classifier.num_parameters()


@pytest.mark.slow
def test_the_real_teacher_in_bf16_agrees_with_float32() -> None:
    from infopt.data import DataConfig, load_dataset, split_dataset

    teacher = load_model("minilm-l6-rt")
    texts = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0).test.texts[:64]
    ref, got = teacher.predict(texts), quantize(teacher, "torch-bf16").predict(texts)
    assert got.dtype == torch.float32
    assert (ref.argmax(-1) == got.argmax(-1)).float().mean() >= 0.95
    assert sqnr(ref, got) > 25.0
