"""save_model / load_model on tiny random-init models: round trips, fingerprints, atomicity, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from infopt.errors import InfoptError
from infopt.models import MANIFEST_FILE, LoadedModel, Manifest, fingerprint_folder, load_model, save_model

TEXTS = ["a great film", "the stock market fell sharply on monday", "hi"]


@pytest.fixture(params=["tiny_bert_classifier", "tiny_bert_embedder", "tiny_llama"])
def tiny(request: pytest.FixtureRequest) -> LoadedModel:
    return request.getfixturevalue(request.param)


@pytest.fixture
def saved(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> Path:
    save_model(tiny_bert_classifier, tmp_path / "cls")
    return tmp_path / "cls"


def _raises_infopt(path: Path, *words: str) -> InfoptError:
    with pytest.raises(InfoptError) as info:
        load_model(path)
    err = info.value
    assert err.problem and err.fix and "Fix:" in str(err)
    for word in words:
        assert word in str(err)
    return err


# --- the fixtures themselves ---


def test_forward_shapes(tiny: LoadedModel) -> None:
    out = tiny.predict(TEXTS)
    tokens = tiny.encode(TEXTS)["input_ids"].shape[1]
    expected = {"classification": (3, 2), "embedding": (3, 32), "causal-lm": (3, tokens, len(tiny.tokenizer))}
    assert out.shape == expected[tiny.task]
    if tiny.task == "embedding":
        torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


def test_tiny_models_are_seeded(tiny: LoadedModel) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fresh = type(tiny.model)(tiny.model.config)
    for (name, a), b in zip(tiny.model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# --- round trips ---


def test_round_trip_gives_equal_outputs(tiny: LoadedModel, tmp_path: Path) -> None:
    saved = save_model(tiny, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert loaded.task == tiny.task
    assert loaded.manifest == saved.manifest
    assert loaded.num_parameters() == tiny.num_parameters()
    torch.testing.assert_close(loaded.predict(TEXTS), tiny.predict(TEXTS), rtol=0, atol=1e-6)


def test_manifest_fields_survive(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    manifest = dataclasses.replace(
        tiny_bert_classifier.manifest, method="finetune", parent="0123456789abcdef",
        recipe=[{"stage": "finetune", "config": {"epochs": 1, "lr": 5e-5}}],
        metrics={"accuracy": 0.75, "latency_ms": {"p50": 1.5}}, created="2024-01-02T03:04:05",
    )
    saved = save_model(dataclasses.replace(tiny_bert_classifier, manifest=manifest), tmp_path / "m")
    assert saved.manifest == dataclasses.replace(manifest, fingerprint=saved.manifest.fingerprint)
    assert load_model(tmp_path / "m").manifest == saved.manifest


def test_folder_without_manifest_infers_task_and_labels(saved: Path) -> None:
    (saved / MANIFEST_FILE).unlink()
    loaded = load_model(saved)
    assert (loaded.task, loaded.manifest.labels, loaded.manifest.name) == (
        "classification", ["negative", "positive"], "cls")
    assert loaded.manifest.fingerprint == fingerprint_folder(saved)


# --- fingerprints ---


def test_fingerprint_is_stable(tiny: LoadedModel, tmp_path: Path) -> None:
    first = save_model(tiny, tmp_path / "a").manifest.fingerprint
    second = save_model(tiny, tmp_path / "b").manifest.fingerprint
    assert len(first) == 16
    assert first == second == fingerprint_folder(tmp_path / "a")


def test_fingerprint_changes_with_weights(tiny: LoadedModel, tmp_path: Path) -> None:
    before = save_model(tiny, tmp_path / "a").manifest.fingerprint
    with torch.no_grad():
        next(tiny.model.parameters()).view(-1)[0] += 1e-3
    assert save_model(tiny, tmp_path / "b").manifest.fingerprint != before


def test_fingerprint_covers_other_weight_files(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"one")
    first = fingerprint_folder(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"two")
    assert fingerprint_folder(tmp_path) != first


# --- atomic save ---


def _failing_save(loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    def save_half(folder: Path, **_: object) -> None:
        (Path(folder) / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(loaded.model, "save_pretrained", save_half)


def test_failed_save_leaves_nothing(tiny_bert_embedder: LoadedModel, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_save(tiny_bert_embedder, monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        save_model(tiny_bert_embedder, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old_folder(tiny_bert_embedder: LoadedModel, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    old = save_model(tiny_bert_embedder, tmp_path / "model").manifest.fingerprint
    _failing_save(tiny_bert_embedder, monkeypatch)
    with pytest.raises(RuntimeError):
        save_model(tiny_bert_embedder, tmp_path / "model", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert load_model(tmp_path / "model").manifest.fingerprint == old


# --- bad input ---


def test_missing_path(tmp_path: Path) -> None:
    _raises_infopt(tmp_path / "nope", "nope", "neither a bundled model", "minilm-l6")


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"x")
    _raises_infopt(tmp_path, "no config.json", "save_pretrained")


def test_file_instead_of_folder(saved: Path) -> None:
    _raises_infopt(saved / "config.json", "not a model folder")


def test_config_without_weights(saved: Path) -> None:
    (saved / "model.safetensors").unlink()
    _raises_infopt(saved, "no weights", "weight files")


def test_corrupt_weights(saved: Path) -> None:
    (saved / "model.safetensors").write_bytes(b"\x00" * 64 + b"not a safetensors file")
    _raises_infopt(saved, "weights", "cannot be loaded", "re-save")


def test_truncated_weights(saved: Path) -> None:
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    _raises_infopt(saved, "cannot be loaded")


def test_corrupt_config(saved: Path) -> None:
    (saved / "config.json").write_text("{not json")
    _raises_infopt(saved, "cannot be read as a model")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"name": "x"}'])
def test_corrupt_manifest(saved: Path, content: str) -> None:
    (saved / MANIFEST_FILE).write_text(content)
    _raises_infopt(saved, MANIFEST_FILE, "corrupt")


def test_manifest_with_unknown_task(saved: Path) -> None:
    data = json.loads((saved / MANIFEST_FILE).read_text())
    (saved / MANIFEST_FILE).write_text(json.dumps({**data, "task": "translation"}))
    _raises_infopt(saved, "translation")


def test_manifest_names_the_data_it_was_fine_tuned_on() -> None:
    plain = Manifest(name="m", task="classification")
    tuned = Manifest(name="m", task="classification", recipe=[
        {"stage": "quantize", "config": {"scheme": "dynamic-int8"}},
        {"stage": "finetune", "config": {"data": "rotten-tomatoes", "epochs": 1}},
    ])
    assert plain.trained_on() is None
    assert tuned.trained_on() == "rotten-tomatoes"
