"""The registry of folder formats: built-ins, entry points, unknown formats, early-exit folders."""

from __future__ import annotations

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
    known = "cascade, early-exit, hf, onnx, openvino, sparse, torch-state"
    with pytest.raises(UserError, match=rf"'zip9' is unknown.*known: {known}"):
        load_model(tmp_path / "m")


def test_a_folder_saved_in_one_format_loads_in_it(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    from infopt.compress.quantize import quantize

    saved = save_model(quantize(tiny_bert_classifier, "dynamic-int8"), tmp_path / "q")
    assert saved.manifest.format == "torch-state"
    again = load_model(tmp_path / "q")
    assert type(again.model) is type(saved.model)
    texts = ["a good film", "a bad film"]
    assert (again.predict(texts) - saved.predict(texts)).abs().max() < 1e-5
