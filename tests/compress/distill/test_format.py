"""The early-exit folder format."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from infopt.models import LoadedModel, load_model, save_model


def test_early_exit_folders_load_with_their_exits(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    """`load_model` gives the early-exit model, so bench / optimize / serve measure what it is (also for folders
    saved before early-exit had a format of its own)."""
    import torch

    from infopt.compress.distill import EarlyExitClassifier
    from infopt.compress.distill._early_exit import new_heads

    base = tiny_bert_classifier.model
    heads = new_heads(base.config.hidden_size, base.config.num_labels, (1,), 0)
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
