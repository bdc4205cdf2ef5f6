"""A model folder replaced on disk: a server restarted on it never answers from the old model's cache entries (the
SQLite file survives restarts), and a running server keeps serving the model it loaded, with its fingerprint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from infopt.models import LoadedModel, Manifest, load_model, save_model
from infopt.serve import ModelSpec, ServeCacheConfig, ServeConfig, create_app

TEXT = "a tender, funny film"


def _perturbed(loaded: LoadedModel, shift: float = 3.0) -> LoadedModel:
    """The same architecture and tokenizer with other weights (another answer for TEXT)."""
    model = type(loaded.model)(loaded.model.config).eval()
    model.load_state_dict(loaded.model.state_dict())
    with torch.no_grad():
        model.classifier.bias.add_(torch.tensor([shift, -shift]))
    return LoadedModel(model, loaded.tokenizer, loaded.manifest)


def _saved(loaded: LoadedModel, folder: Path) -> LoadedModel:
    manifest = Manifest(name="clf", task="classification", labels=["negative", "positive"])
    return save_model(LoadedModel(loaded.model, loaded.tokenizer, manifest), folder)


def _classify(url: str, text: str = TEXT) -> httpx.Response:
    r = httpx.post(url + "/v1/classify", json={"model": "clf", "input": text}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def _probs(r: httpx.Response) -> list[float]:
    return [round(p, 5) for _, p in sorted(r.json()["data"][0]["probabilities"].items())]


def _fingerprint(url: str) -> str:
    models = httpx.get(url + "/v1/models", timeout=10).json()["data"]
    return str(next(m for m in models if m["id"] == "clf")["fingerprint"])


def _replace_with_save_pretrained(folder: Path, loaded: LoadedModel) -> None:
    """What a user re-training into the same folder does: transformers' own save over it (infopt.json stays)."""
    loaded.model.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)


def test_a_restarted_server_never_answers_from_the_replaced_models_entries(
        live: Any, tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    folder, other = tmp_path / "clf", tmp_path / "other"
    _saved(tiny_bert_classifier, folder)
    config = ServeConfig(models=(ModelSpec("clf", str(folder)),), cache=ServeCacheConfig(path=str(tmp_path / "c.db")))

    def serve() -> Any:
        return live(create_app(config)).wait_ready()

    one = serve()
    old, old_fp = _probs(_classify(one.url)), _fingerprint(one.url)
    assert _classify(one.url).headers["x-infopt-cache"] == "exact"
    one.stop()

    # 1. the folder swapped for another infopt model folder (rm -rf, copy)
    new = _perturbed(tiny_bert_classifier)
    _saved(new, other)
    shutil.rmtree(folder)
    shutil.copytree(other, folder)
    two = serve()
    r = _classify(two.url)
    assert "x-infopt-cache" not in r.headers and _probs(r) != old and _fingerprint(two.url) != old_fp
    two.stop()

    # 2. new weights written over the folder by transformers: infopt.json (and its fingerprint) left behind
    shutil.rmtree(folder)
    _saved(tiny_bert_classifier, folder)
    assert load_model(folder).manifest.fingerprint == old_fp
    _replace_with_save_pretrained(folder, _perturbed(tiny_bert_classifier, -2.0))  # a model never served
    assert load_model(folder).manifest.fingerprint != old_fp  # the folder's files decide, not a stale manifest
    three = serve()
    r = _classify(three.url)
    assert "x-infopt-cache" not in r.headers, "the old model's entry answered for the new weights"
    assert _probs(r) != old and _fingerprint(three.url) != old_fp
    three.stop()


def test_a_running_server_keeps_serving_the_model_it_loaded(
        live: Any, tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    folder = tmp_path / "clf"
    _saved(tiny_bert_classifier, folder)
    config = ServeConfig(models=(ModelSpec("clf", str(folder)),), cache=ServeCacheConfig(path=str(tmp_path / "c.db")))
    server = live(create_app(config)).wait_ready()
    old, fp = _probs(_classify(server.url)), _fingerprint(server.url)
    fresh = _probs(_classify(server.url, "a second review"))

    new = _perturbed(tiny_bert_classifier)
    shutil.rmtree(folder)  # replaced under the running server
    _saved(new, folder)
    assert load_model(folder).manifest.fingerprint != fp

    again = _classify(server.url)
    assert again.headers["x-infopt-cache"] == "exact" and _probs(again) == old  # its own model's entry
    assert _fingerprint(server.url) == fp
    other = _classify(server.url, "a third review")  # computed by the model it loaded, not the folder's new one
    assert "x-infopt-cache" not in other.headers
    assert _probs(other) == pytest.approx(_softmax(tiny_bert_classifier, "a third review"), abs=1e-4)
    assert _probs(other) != pytest.approx(_softmax(new, "a third review"), abs=1e-4)
    assert fresh == pytest.approx(_softmax(tiny_bert_classifier, "a second review"), abs=1e-4)
    assert httpx.get(server.url + "/ready", timeout=10).status_code == 200


def _softmax(loaded: LoadedModel, text: str) -> list[float]:
    with torch.no_grad():
        return [float(p) for p in torch.softmax(loaded.predict([text]).float(), dim=-1)[0]]
