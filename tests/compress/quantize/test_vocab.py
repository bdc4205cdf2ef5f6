"""vocab-trim: only the domain's tokens kept, the tokenizer rewritten to match, the folder loads with transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from infopt.compress.quantize import VocabTrimConfig, quantize, trim_vocab
from infopt.data import TextDataset
from infopt.errors import InfoptError, NotApplicable
from infopt.models import LoadedModel, load_model, save_model


@pytest.fixture
def trimmed(tiny_bert_classifier: LoadedModel, reviews: TextDataset) -> LoadedModel:
    return trim_vocab(tiny_bert_classifier, reviews.texts)


def test_only_the_seen_tokens_the_specials_and_the_characters_are_kept(
        tiny_bert_classifier: LoadedModel, reviews: TextDataset, trimmed: LoadedModel) -> None:
    tok = tiny_bert_classifier.tokenizer
    seen = {t for text in reviews.texts for t in tok.tokenize(text)}
    vocab = trimmed.tokenizer.get_vocab()
    assert seen <= set(vocab) and set(tok.all_special_tokens) <= set(vocab)
    assert {"q", "##q", "7", "##7", "!"} <= set(vocab)
    assert len(vocab) < 300 and trimmed.model.config.vocab_size == len(vocab)  # from 30,522
    assert trimmed.model.get_input_embeddings().num_embeddings == len(vocab)
    ids = sorted(vocab.values())
    assert ids == list(range(len(vocab)))
    old = [tok.convert_tokens_to_ids(t) for t in sorted(vocab, key=vocab.__getitem__)]
    assert old == sorted(old)  # the original order is kept
    info = trimmed.manifest.metrics["vocab-trim"]
    assert (info["vocab_before"], info["vocab_after"], info["texts"]) == (30522, len(vocab), len(reviews))
    assert trimmed.manifest.recipe[-1] == {"stage": "vocab-trim", "config": VocabTrimConfig().to_dict()}
    assert trimmed.manifest.method == "vocab-trim" and trimmed.manifest.format == "hf"


def test_seen_texts_give_exactly_the_same_outputs(tiny_bert_classifier: LoadedModel, reviews: TextDataset,
                                                  trimmed: LoadedModel) -> None:
    texts = reviews.texts[:16]
    torch.testing.assert_close(trimmed.predict(texts), tiny_bert_classifier.predict(texts), rtol=0, atol=1e-6)
    before = tiny_bert_classifier.model.get_input_embeddings().num_embeddings
    assert before == 30522  # the input is untouched


def test_the_folder_loads_with_plain_transformers(trimmed: LoadedModel, reviews: TextDataset, tmp_path: Path) -> None:
    save_model(trimmed, tmp_path / "trimmed")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "trimmed").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "trimmed")
    texts = reviews.texts[:8]
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(logits, trimmed.predict(texts), rtol=0, atol=1e-6)
    back = load_model(tmp_path / "trimmed")
    assert back.tokenizer.get_vocab() == trimmed.tokenizer.get_vocab()
    assert back.manifest.recipe == trimmed.manifest.recipe


def test_unseen_words_split_into_kept_pieces_or_become_unk(tiny_bert_classifier: LoadedModel,
                                                           reviews: TextDataset, trimmed: LoadedModel) -> None:
    pieces = trimmed.tokenizer.tokenize("zebra")
    assert len(pieces) > 1 and "".join(p.removeprefix("##") for p in pieces) == "zebra"
    no_chars = trim_vocab(tiny_bert_classifier, reviews.texts, VocabTrimConfig(keep_chars=False))
    assert no_chars.tokenizer.tokenize("zebra") == ["[UNK]"]
    ids = no_chars.tokenizer("zebra film")["input_ids"]
    assert ids[0] == no_chars.tokenizer.cls_token_id and ids[-1] == no_chars.tokenizer.sep_token_id
    assert no_chars.predict(["zebra film"]).shape == (1, 2)


def test_min_count_drops_rare_tokens(tiny_bert_classifier: LoadedModel, reviews: TextDataset) -> None:
    texts = [*reviews.texts, "a quixotic film"]
    once = trim_vocab(tiny_bert_classifier, texts, VocabTrimConfig(keep_chars=False))
    twice = trim_vocab(tiny_bert_classifier, texts, VocabTrimConfig(min_count=2, keep_chars=False))
    quixotic = set(tiny_bert_classifier.tokenizer.tokenize("quixotic"))
    assert quixotic <= set(once.tokenizer.get_vocab()) and not quixotic <= set(twice.tokenizer.get_vocab())


def test_what_cannot_be_trimmed_is_refused(tiny_bert_classifier: LoadedModel, tiny_llama: LoadedModel,
                                           reviews: TextDataset) -> None:
    with pytest.raises(NotApplicable, match="causal-lm"):
        trim_vocab(tiny_llama, reviews.texts)
    with pytest.raises(NotApplicable, match="then quantize"):
        trim_vocab(quantize(tiny_bert_classifier, "dynamic-int8"), reviews.texts)
    with pytest.raises(NotApplicable, match="PyTorch"):
        trim_vocab(quantize(tiny_bert_classifier, "onnx-fp32"), reviews.texts)
    with pytest.raises(InfoptError, match="texts"):
        trim_vocab(tiny_bert_classifier, [])
    with pytest.raises(InfoptError, match="min_count"):
        VocabTrimConfig(min_count=0)


def test_trimmed_then_quantized_with_4_bit_embeddings(trimmed: LoadedModel, reviews: TextDataset,
                                                      tmp_path: Path) -> None:
    q = quantize(trimmed, "onnx-int8-emb4")
    assert q.manifest.metrics["quantize"]["word_embedding"]["rows"] == trimmed.model.config.vocab_size
    save_model(q, tmp_path / "q")
    back = load_model(tmp_path / "q")
    assert [s["stage"] for s in back.manifest.recipe] == ["vocab-trim", "quantize"]
    torch.testing.assert_close(back.predict(reviews.texts[:4]), q.predict(reviews.texts[:4]), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_the_real_teacher_trimmed_to_its_domain() -> None:
    """minilm-l6-rt on Rotten Tomatoes: 13.7k of 30.5k tokens kept; trimmed + vnni-emb4 on 160 test reviews."""
    from infopt.data import DataConfig, load_dataset, split_dataset

    teacher = load_model("minilm-l6-rt")
    splits = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0)
    small = trim_vocab(teacher, splits.train.texts)
    assert 10_000 < small.model.config.vocab_size < 16_000  # measured 13,713
    seen = splits.train.texts[:64]
    torch.testing.assert_close(small.predict(seen), teacher.predict(seen), rtol=0, atol=1e-5)
    test = splits.test.texts[:160]
    q = quantize(small, "onnx-int8-vnni-emb4")
    agree = (q.predict(test).argmax(-1) == teacher.predict(test).argmax(-1)).float().mean()
    assert agree >= 0.95
    assert q.num_parameters() < 0.8 * teacher.num_parameters()


def test_a_tokenizer_that_does_not_match_is_caught(tiny_bert_classifier: LoadedModel, reviews: TextDataset,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from infopt.compress.quantize import _vocab

    monkeypatch.setattr(_vocab, "_new_tokenizer", lambda tokenizer, tokens: tokenizer)  # ids not renumbered
    with pytest.raises(RuntimeError, match="tokenize differently"):
        trim_vocab(tiny_bert_classifier, reviews.texts)
