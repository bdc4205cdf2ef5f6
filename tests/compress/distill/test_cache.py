"""Offline teacher cache: keyed by teacher and data, reused without running the teacher, filled incrementally."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from infopt.compress.distill import teacher_cache_folder, teacher_outputs
from infopt.data import TextDataset
from infopt.models import LoadedModel, cache_dir, fingerprint_model


def _forbid_teacher(model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> None:
        raise AssertionError("the teacher ran although its outputs were cached")

    monkeypatch.setattr(model.model, "forward", boom)


def test_second_run_reads_the_cache_and_never_runs_the_teacher(
    tiny_bert_classifier: LoadedModel, reviews: TextDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = teacher_outputs(tiny_bert_classifier, reviews.texts, 16)
    assert first.ran_teacher and first.logits.shape == (len(reviews), 2)
    folder = teacher_cache_folder(tiny_bert_classifier, reviews.texts, 16)
    assert folder.parent == cache_dir() / "teacher-logits"
    assert (folder / "logits.safetensors").is_file()
    _forbid_teacher(tiny_bert_classifier, monkeypatch)
    second = teacher_outputs(tiny_bert_classifier, reviews.texts, 16)
    assert not second.ran_teacher
    torch.testing.assert_close(second.logits, first.logits)


def test_cached_logits_equal_a_direct_forward(tiny_bert_classifier: LoadedModel, reviews: TextDataset) -> None:
    out = teacher_outputs(tiny_bert_classifier, reviews.texts[:10], 16)
    direct = tiny_bert_classifier.predict(reviews.texts[:10], max_length=16)
    torch.testing.assert_close(out.logits, direct, rtol=1e-4, atol=1e-5)


def test_missing_items_are_added_without_recomputing_logits(
    tiny_bert_classifier: LoadedModel, reviews: TextDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = reviews.texts[:20]
    teacher_outputs(tiny_bert_classifier, texts, 16)
    more = teacher_outputs(tiny_bert_classifier, texts, 16, pooled_layers=(1, 2), attention_layers=(2,))
    assert more.ran_teacher
    assert more.pooled[2].shape == (20, 32)
    maps = more.attention_batch(2, [0, 1], 12)
    n = len(tiny_bert_classifier.tokenizer(texts[0])["input_ids"])
    torch.testing.assert_close(maps[0, :n, :n].sum(-1), torch.ones(n), atol=2e-3, rtol=0)
    assert maps[0, n:].abs().sum() == 0
    _forbid_teacher(tiny_bert_classifier, monkeypatch)
    again = teacher_outputs(tiny_bert_classifier, texts, 16, pooled_layers=(2,), attention_layers=(2,))
    assert not again.ran_teacher
    torch.testing.assert_close(again.pooled[2], more.pooled[2])
    assert tiny_bert_classifier.model.config._attn_implementation != "eager"  # restored


def test_key_changes_with_data_weights_and_max_length(tiny_bert_classifier: LoadedModel, reviews: TextDataset) -> None:
    base = teacher_cache_folder(tiny_bert_classifier, reviews.texts, 16)
    assert teacher_cache_folder(tiny_bert_classifier, reviews.texts[1:], 16) != base
    assert teacher_cache_folder(tiny_bert_classifier, reviews.texts, 32) != base
    fp = fingerprint_model(tiny_bert_classifier)
    with torch.no_grad():
        tiny_bert_classifier.model.classifier.bias.add_(0.1)
    assert fingerprint_model(tiny_bert_classifier) != fp
    assert teacher_cache_folder(tiny_bert_classifier, reviews.texts, 16) != base


def test_corrupt_cache_file_is_recomputed(tiny_bert_classifier: LoadedModel, reviews: TextDataset) -> None:
    first = teacher_outputs(tiny_bert_classifier, reviews.texts[:8], 16)
    folder = teacher_cache_folder(tiny_bert_classifier, reviews.texts[:8], 16)
    (folder / "logits.safetensors").write_bytes(b"not a safetensors file")
    again = teacher_outputs(tiny_bert_classifier, reviews.texts[:8], 16)
    assert again.ran_teacher
    torch.testing.assert_close(again.logits, first.logits)
    assert not list(folder.glob(".*tmp*"))


def test_no_cache_mode_writes_nothing(tiny_bert_classifier: LoadedModel, reviews: TextDataset) -> None:
    out = teacher_outputs(tiny_bert_classifier, reviews.texts[:8], 16, use_cache=False)
    assert out.ran_teacher
    assert not (cache_dir() / "teacher-logits").exists()
