"""An `openvino` model folder served by a real uvicorn server (in-process), classifying over HTTP. Skipped where
OpenVINO is not installed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from infopt.compress.quantize import OpenVinoFp32Config, OpenVinoModel, quantize
from infopt.models import LoadedModel, load_model, save_model
from infopt.serve import ModelSpec, ServeConfig, create_app

TEXTS = ["a good film", "a bad film", "the plot is thin but the cast is charming"]


@pytest.fixture(scope="module")
def ov_model(model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, Path]:
    """The tiny classifier of `model_dirs` as an openvino folder (1 thread), and its folder."""
    pytest.importorskip("openvino")
    folder = tmp_path_factory.mktemp("openvino-serve") / "clf-openvino"
    saved = save_model(quantize(load_model(model_dirs["clf"]), OpenVinoFp32Config(threads=1)), folder)
    return saved, folder


def _classify(url: str, model: str) -> list[dict[str, Any]]:
    r = httpx.post(url + "/v1/classify", json={"model": model, "input": TEXTS}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model and len(body["data"]) == len(TEXTS)
    return list(body["data"])


def _check(rows: list[dict[str, Any]], expected: LoadedModel) -> None:
    probs = torch.softmax(expected.predict(TEXTS), dim=-1)
    for i, row in enumerate(rows):
        assert row["index"] == i and set(row["probabilities"]) == {"negative", "positive"}
        assert math.isclose(sum(row["probabilities"].values()), 1, rel_tol=1e-5)
        assert row["probabilities"]["positive"] == pytest.approx(float(probs[i, 1]), abs=1e-4)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)


def test_serves_an_openvino_folder(live: Any, ov_model: tuple[LoadedModel, Path],
                                   model_dirs: dict[str, Path]) -> None:
    _, folder = ov_model
    server = live(create_app(ServeConfig(models=(ModelSpec("ov", str(folder)),)))).wait_ready()
    served = server.state.models["ov"].loaded
    assert isinstance(served.model, OpenVinoModel) and served.model.threads == 1
    assert server.state.models["ov"].max_tokens == 128  # the model's position limit, from its config.json
    _check(_classify(server.url, "ov"), load_model(model_dirs["clf"]))
    two = live(create_app(ServeConfig(models=(ModelSpec("ov", str(folder), threads=2),)))).wait_ready()
    assert two.state.models["ov"].loaded.model.threads == 2  # the serve.toml `threads` key remakes the session
    _check(_classify(two.url, "ov"), load_model(model_dirs["clf"]))
    again = _classify(server.url, "ov")  # the response cache is keyed by the folder's fingerprint
    assert [r["label"] for r in again] == [r["label"] for r in _classify(server.url, "ov")]


def test_serves_a_loaded_openvino_model(live: Any, ov_model: tuple[LoadedModel, Path],
                                        model_dirs: dict[str, Path]) -> None:
    saved, _ = ov_model
    server = live(create_app({"ov": saved})).wait_ready()
    _check(_classify(server.url, "ov"), load_model(model_dirs["clf"]))
