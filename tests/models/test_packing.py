"""Packed batches: the layout `pack` builds, and packed outputs equal padded ones for BERT classifiers and embedders."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infopt.models import LoadedModel
from infopt.models import _loaded as loaded_module
from infopt.models._packing import pack
from infopt.models.modeling_pruned_bert import PrunedBertConfig, PrunedBertForSequenceClassification

TEXTS = ["a tender, funny film", "no", "the plot drags on and on " * 14, "fine", "it is what it is, and that is ok"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 90), min_size=1, max_size=20), st.integers(1, 80))
def test_every_text_lies_whole_in_one_row_with_its_own_positions(lengths: list[int], min_row: int) -> None:
    seqs = [[1000 * (i + 1) + j for j in range(n)] for i, n in enumerate(lengths)]
    p = pack(seqs, min_row=min_row)
    assert p.input_ids.shape[1] <= max(min_row, *lengths)
    for i, seq in enumerate(seqs):
        row, col = int(p.starts[0][i]), int(p.starts[1][i])
        span = slice(col, col + len(seq))
        assert p.input_ids[row, span].tolist() == seq
        assert p.position_ids[row, span].tolist() == list(range(len(seq)))
        assert (p.text == i).sum() == len(seq) and (p.text[row, span] == i).all()
    assert (p.input_ids[p.text < 0] == 0).all()


def test_short_texts_share_rows_and_the_mask_is_block_diagonal() -> None:
    p = pack([{"input_ids": [5, 6, 7], "token_type_ids": [0, 1, 1]}, {"input_ids": [8, 9]}], min_row=8)
    assert p.input_ids.tolist() == [[5, 6, 7, 8, 9]]
    assert p.token_type_ids.tolist() == [[0, 1, 1, 0, 0]]
    mask = p.attention_mask(torch.float32)[0, 0]
    assert (mask[:3, :3] == 0).all() and (mask[3:, 3:] == 0).all()
    assert (mask[:3, 3:] == torch.finfo(torch.float32).min).all() and (mask[3:, :3] < 0).all()
    with pytest.raises(ValueError, match="at least one"):
        pack([[1], []])


@pytest.mark.parametrize("fixture", ["tiny_bert_classifier", "tiny_bert_embedder"])
def test_packed_outputs_equal_padded_ones(fixture: str, request: pytest.FixtureRequest) -> None:
    model: LoadedModel = request.getfixturevalue(fixture)
    assert model.packs
    got = model.predict_packed(TEXTS)
    want = model.predict(TEXTS)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)


def test_a_pruned_bert_packs(tiny_bert_classifier: LoadedModel) -> None:
    config = PrunedBertConfig(heads_per_layer=[1, 2], **tiny_bert_classifier.model.config.to_dict())
    torch.manual_seed(0)
    pruned = LoadedModel(PrunedBertForSequenceClassification(config).eval(), tiny_bert_classifier.tokenizer,
                         tiny_bert_classifier.manifest)
    assert pruned.packs
    assert torch.allclose(pruned.predict_packed(TEXTS), pruned.predict(TEXTS), atol=1e-5)


def test_models_packing_does_not_know_are_not_packed(tiny_llama: LoadedModel,
                                                     tiny_bert_embedder: LoadedModel) -> None:
    assert not tiny_llama.packs
    as_classifier = LoadedModel(tiny_bert_embedder.model, tiny_bert_embedder.tokenizer,
                                tiny_bert_embedder.manifest.__class__(name="x", task="classification"))
    assert not as_classifier.packs  # a bare encoder has no classifier head to read [CLS] with


def test_a_model_whose_packed_outputs_differ_is_not_packed(tiny_bert_classifier: LoadedModel,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real = loaded_module.packed_forward
    monkeypatch.setattr(loaded_module, "packed_forward", lambda *a: real(*a) + 1e-2)
    assert not tiny_bert_classifier.packs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["minilm-l6-rt", "minilm-l6"])
def test_the_bundled_models_pack_exactly(name: str) -> None:
    from infopt.data import DataConfig, load_dataset, split_dataset
    from infopt.models import load_model

    model = load_model(name)
    texts = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0).test.texts[:64]
    assert model.packs
    got, want = model.predict_packed(texts), model.predict(texts)
    assert (got - want).abs().max() < 1e-4
    if name == "minilm-l6-rt":
        assert torch.equal(got.argmax(-1), want.argmax(-1))
