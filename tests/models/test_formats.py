"""The registry of folder formats: built-ins, entry points, unknown formats, early-exit folders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from infopt.errors import UserError
from infopt.models import LoadedModel, get_format, load_model, save_model


def test_every_format_is_found() -> None:
    for name in ("hf", "onnx", "torch-state", "sparse", "early-exit"):
        assert get_format(name).name == name


def test_an_unknown_format_names_the_fix(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    save_model(tiny_bert_classifier, tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "infopt.json").read_text())
    (tmp_path / "m" / "infopt.json").write_text(json.dumps({**manifest, "format": "zip9"}))
    with pytest.raises(UserError, match=r"'zip9' is unknown.*known: early-exit, hf, onnx, sparse, torch-state"):
        load_model(tmp_path / "m")


def test_a_folder_saved_in_one_format_loads_in_it(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    from infopt.compress.quantize import quantize

    saved = save_model(quantize(tiny_bert_classifier, "dynamic-int8"), tmp_path / "q")
    assert saved.manifest.format == "torch-state"
    again = load_model(tmp_path / "q")
    assert type(again.model) is type(saved.model)
    texts = ["a good film", "a bad film"]
    assert (again.predict(texts) - saved.predict(texts)).abs().max() < 1e-5


def test_early_exit_folders_load_with_their_exits(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    """`load_model` gives the early-exit model, so bench / optimize / serve measure what it is (also for folders
    saved before early-exit had a format of its own)."""
    import torch

    from infopt.compress.distill import EarlyExitClassifier
    from infopt.compress.distill._early_exit import _new_heads

    base = tiny_bert_classifier.model
    heads = _new_heads(base.config.hidden_size, base.config.num_labels, (1,), 0)
    ee = EarlyExitClassifier(base, (1,), 0.5, heads)
    recipe = [{"stage": "early-exit", "config": {"exit_layers": [1], "threshold": 0.5}}]
    manifest = dataclasses.replace(tiny_bert_classifier.manifest, format="early-exit", recipe=recipe)
    save_model(LoadedModel(ee, tiny_bert_classifier.tokenizer, manifest), tmp_path / "ee")
    loaded = load_model(tmp_path / "ee")
    assert isinstance(loaded.model, EarlyExitClassifier) and loaded.model.threshold == 0.5
    texts = ["a good film", "a bad film", "it was fine"]
    direct = LoadedModel(ee, tiny_bert_classifier.tokenizer, manifest).predict(texts)
    assert torch.allclose(loaded.predict(texts), direct, atol=1e-5)
    assert loaded.model.last_exit_layers == [1, 1, 1]  # threshold 0.5 on 2 classes: everything exits at layer 1
    legacy = json.loads((tmp_path / "ee" / "infopt.json").read_text()) | {"format": "hf"}
    (tmp_path / "ee" / "infopt.json").write_text(json.dumps(legacy))
    assert isinstance(load_model(tmp_path / "ee").model, EarlyExitClassifier)
