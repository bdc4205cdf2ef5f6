"""An exported cascade folder served as one model by a real HTTP server (in process, and `infopt serve`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from infopt.compress.cascade import CascadeModel, make_cascade
from infopt.models import LoadedModel, load_model, save_model
from infopt.serve import ModelSpec, ServeConfig, create_app

INFOPT = str(Path(sys.executable).parent / "infopt")
TEXTS = ["a great film", "the plot is dull", "awful and stale", "a wonderful, moving, funny movie", "flat",
         "the cast is charming but the story is weak", "really quite sharp", "boring"]


@pytest.fixture
def cascade_dir(make_classifier: Callable[..., LoadedModel], tokenizer: object, tmp_path: Path) -> Path:
    """A cascade of two tiny random classifiers whose threshold sends about half of TEXTS to the large one."""
    small = make_classifier(tokenizer, layers=1, seed=1, name="small")
    large = make_classifier(tokenizer, layers=2, seed=2, name="large")
    conf = torch.softmax(small.predict(TEXTS), -1).amax(-1).sort().values
    cut = float(conf[3] + conf[4]) / 2  # between two rows, so padding noise cannot move a row across it
    save_model(make_cascade(small, large, cut), tmp_path / "casc")
    return tmp_path / "casc"


def _expected(folder: Path) -> tuple[list[list[float]], list[bool]]:
    """Per text: the cascade's probabilities at batch 1, and whether it escalated."""
    model = load_model(folder)
    assert isinstance(model.model, CascadeModel)
    probs, escalated = [], []
    for text in TEXTS:
        probs.append(torch.softmax(model.predict([text]), -1)[0].tolist())
        escalated.append(model.model.last_escalated[0])
    return probs, escalated


def test_cascade_served_in_process(live: Any, cascade_dir: Path) -> None:
    probs, escalated = _expected(cascade_dir)
    assert 0 < sum(escalated) < len(TEXTS)
    server = live(create_app(ServeConfig(models=(ModelSpec("casc", str(cascade_dir)),)))).wait_ready(60)
    for text, p in zip(TEXTS, probs, strict=True):
        r = httpx.post(server.url + "/v1/classify", json={"model": "casc", "input": text}, timeout=30)
        assert r.status_code == 200, r.text
        got = r.json()["data"][0]["probabilities"]
        assert [got["negative"], got["positive"]] == pytest.approx(p, abs=1e-5)
    served = server.state.models["casc"].loaded.model
    assert isinstance(served, CascadeModel)
    assert (served.rows, served.escalated) == (len(TEXTS), sum(escalated))
    info = httpx.get(server.url + "/v1/models").json()["data"][0]
    assert info["format"] == "cascade" and info["labels"] == ["negative", "positive"]
    assert info["fingerprint"] == load_model(cascade_dir).manifest.fingerprint
    assert info["recipe"][-1]["stage"] == "cascade"


def test_cascade_through_the_console_script(cascade_dir: Path, tmp_path: Path, serve_process: Any) -> None:
    probs, _ = _expected(cascade_dir)
    with serve_process([f"casc={cascade_dir}", "--no-cache"], tmp_path / "serve.log") as url:
        r = httpx.post(url + "/v1/classify", json={"model": "casc", "input": TEXTS}, timeout=30)
        assert r.status_code == 200, r.text
        for row, p in zip(r.json()["data"], probs, strict=True):
            got = row["probabilities"]
            assert [got["negative"], got["positive"]] == pytest.approx(p, abs=1e-4)



def test_early_exit_folder_served_with_a_risk_controlled_threshold(
        live: Any, tiny_teacher: LoadedModel, make_data: Callable[..., Any], tmp_path: Path) -> None:
    """The self-distilled early-exit model is served the same way once its threshold is set by the cascade's rule."""
    from infopt.compress.distill import DistillConfig, EarlyExitClassifier, EarlyExitConfig, distill
    from infopt.data import Splits
    from infopt.optimize._cascade import calibrate_early_exit
    from infopt.train import FinetuneConfig

    reviews = make_data(96)
    config = DistillConfig(scheme="self", train=FinetuneConfig(epochs=1, batch_size=16, lr=1e-3, max_length=16),
                           early_exit=EarlyExitConfig(head_epochs=20, head_lr=5e-3))
    early, choice = calibrate_early_exit(distill(tiny_teacher, None, Splits(reviews, reviews, reviews), config),
                                         make_data(200, seed=9), max_drop=5.0)
    assert choice.passed
    save_model(early, tmp_path / "ee")
    direct = load_model(tmp_path / "ee")
    assert isinstance(direct.model, EarlyExitClassifier) and direct.model.threshold == choice.threshold
    server = live(create_app(ServeConfig(models=(ModelSpec("ee", str(tmp_path / "ee")),)))).wait_ready(60)
    for text in TEXTS[:4]:
        r = httpx.post(server.url + "/v1/classify", json={"model": "ee", "input": text}, timeout=30)
        assert r.status_code == 200, r.text
        got = r.json()["data"][0]["probabilities"]
        want = torch.softmax(direct.predict([text]), -1)[0].tolist()
        assert [got["negative"], got["positive"]] == pytest.approx(want, abs=1e-5)
    assert httpx.get(server.url + "/v1/models").json()["data"][0]["format"] == "early-exit"
