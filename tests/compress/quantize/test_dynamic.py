"""dynamic-int8 / dynamic-int8-emb on the tiny models."""

from __future__ import annotations

from pathlib import Path

import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn

from infopt.compress.quantize import Int8Embedding, config_from_name, quantize, sqnr
from infopt.compress.quantize._dynamic import FullRangeDynamicLinear
from infopt.models import LoadedModel, save_model

from .conftest import assert_same_outputs

# measured on the seeded tiny models: 33 dB (classifier), 32 dB (llama); random weights, so margin
MIN_SQNR_DB = 26.0


def test_all_linear_layers_are_quantized(tiny_bert_classifier: LoadedModel, texts: list[str]) -> None:
    q = quantize(tiny_bert_classifier, "dynamic-int8")
    assert not [n for n, m in q.model.named_modules() if type(m) is nn.Linear]
    assert all(type(m) is FullRangeDynamicLinear for m in q.model.modules() if isinstance(m, nnqd.Linear))
    assert q.manifest.metrics["quantize"]["quantized_layers"] == 14
    assert sqnr(tiny_bert_classifier.predict(texts), q.predict(texts)) > MIN_SQNR_DB


def test_seven_bit_activations_use_torch_ao_module(tiny_bert_classifier: LoadedModel, roundtrip,  # type: ignore[no-untyped-def]
                                                   texts: list[str]) -> None:
    q = quantize(tiny_bert_classifier, config_from_name("dynamic-int8", activation_bits=7, per_channel=False))
    assert type(q.model.classifier) is nnqd.Linear
    assert sqnr(tiny_bert_classifier.predict(texts), q.predict(texts)) > MIN_SQNR_DB
    assert_same_outputs(q, roundtrip(q), texts)


def test_weights_fit_seven_bits(tiny_bert_classifier: LoadedModel) -> None:
    q = quantize(tiny_bert_classifier, "dynamic-int8")
    w = q.model.classifier.weight().int_repr()
    assert int(w.max()) <= 63 and int(w.min()) >= -64


def test_exclude_keeps_float_layers(tiny_bert_classifier: LoadedModel, roundtrip, texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    q = quantize(tiny_bert_classifier, config_from_name("dynamic-int8", exclude=["classifier", "*.query"]))
    assert type(q.model.classifier) is nn.Linear
    assert type(q.model.bert.encoder.layer[0].attention.self.query) is nn.Linear
    assert q.manifest.metrics["quantize"]["quantized_layers"] == 14 - 1 - 2
    back = roundtrip(q)
    assert type(back.model.classifier) is nn.Linear
    assert_same_outputs(q, back, texts)


def test_int8_embeddings(tiny_bert_embedder: LoadedModel, roundtrip, texts: list[str],  # type: ignore[no-untyped-def]
                         tmp_path: Path) -> None:
    q = quantize(tiny_bert_embedder, "dynamic-int8-emb")
    save_model(quantize(tiny_bert_embedder, "dynamic-int8"), tmp_path / "plain")
    save_model(q, tmp_path / "emb")
    plain_size, emb_size = ((tmp_path / d / "state.pt").stat().st_size for d in ("plain", "emb"))
    assert emb_size < 0.4 * plain_size  # the 30522 x 32 table is most of the tiny model
    assert isinstance(q.model.embeddings.word_embeddings, Int8Embedding)
    assert isinstance(q.model.embeddings.position_embeddings, nn.Embedding)
    assert sqnr(tiny_bert_embedder.predict(texts), q.predict(texts)) > MIN_SQNR_DB
    back = roundtrip(q)
    assert_same_outputs(q, back, texts)
    assert isinstance(back.model.embeddings.word_embeddings, Int8Embedding)


def test_int8_embeddings_on_tied_llama(tiny_llama: LoadedModel, roundtrip, texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    q = quantize(tiny_llama, "dynamic-int8-emb")
    assert isinstance(q.model.model.embed_tokens, Int8Embedding)
    assert isinstance(q.model.lm_head, FullRangeDynamicLinear)
    assert sqnr(tiny_llama.predict(texts), q.predict(texts)) > MIN_SQNR_DB
    assert_same_outputs(q, roundtrip(q), texts)
    # the input model keeps its tied float embedding
    assert tiny_llama.model.lm_head.weight is tiny_llama.model.model.embed_tokens.weight
