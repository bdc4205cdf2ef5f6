"""--export: the chosen variant copied with a serve.toml that a real `infopt serve --config` serves."""

from __future__ import annotations

import json
import socket
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from infopt.errors import UserError
from infopt.evaluate import RunResult, SpeedResult, VariantResult
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize import export_variant
from infopt.serve import load_serve_config

INFOPT = str(Path(sys.executable).parent / "infopt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def a_run(report: Path, model: LoadedModel) -> RunResult:
    save_model(model, report / "variants" / "baseline")
    save_model(model, report / "variants" / "dynamic-int8")
    speed = SpeedResult(1.0, 1.5, 2.0, 500.0, 16, 2)
    variants = [VariantResult(n, "m", "classification", {"accuracy": 90.0}, speed, 1.0, 100.0, 10,
                              path=f"variants/{p}", recipe=r)
                for n, p, r in (("tiny (baseline)", "baseline", ""), ("dynamic-int8", "dynamic-int8", "dynamic-int8"))]
    run = RunResult(str(report.parent / "tiny-clf"), "classification", "reviews", variants, {})
    run.chosen, run.recommendation = "dynamic-int8", "Use dynamic-int8: it is the fastest."
    return run


def test_export_writes_a_served_folder(tiny_bert_classifier: LoadedModel, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, serve_process: Any) -> None:
    monkeypatch.setenv("INFOPT_CACHE", str(tmp_path / "cache"))  # the server's response cache
    run = a_run(tmp_path / "report", tiny_bert_classifier)
    out = export_variant(run, tmp_path / "report", tmp_path / "export")
    assert load_model(out / "model").manifest.name == tiny_bert_classifier.manifest.name
    facts = json.loads((out / "export.json").read_text())
    assert facts["variant"] == "dynamic-int8" and facts["recommendation"].startswith("Use dynamic-int8")
    toml = tomllib.loads((out / "serve.toml").read_text())
    assert toml["models"] == [{"name": "tiny-clf", "path": "model"}]  # beside the file: the folder can move
    assert toml["batching"]["max_batch_size"] == 16
    assert load_serve_config(out / "serve.toml").models[0].name == "tiny-clf"
    moved = out.rename(tmp_path / "moved")  # served from its new place, whatever the working directory
    assert load_serve_config(moved / "serve.toml").models[0].path == str((moved / "model").resolve())

    with serve_process(["--config", str(moved / "serve.toml")], tmp_path / "serve.log", cwd=tmp_path) as url:
        r = httpx.post(url + "/v1/classify", json={"model": "tiny-clf", "input": ["a fine film", "a dull one"]})
        assert r.status_code == 200, r.text
        ids = tiny_bert_classifier.predict(["a fine film", "a dull one"]).argmax(-1).tolist()
        assert [d["label"] for d in r.json()["data"]] == [tiny_bert_classifier.manifest.labels[i] for i in ids]


def test_export_refuses_what_it_must_not_replace(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    run = a_run(tmp_path / "report", tiny_bert_classifier)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="did not write"):
        export_variant(run, tmp_path / "report", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    export_variant(run, tmp_path / "report", tmp_path / "export")
    with pytest.raises(UserError, match="--overwrite"):
        export_variant(run, tmp_path / "report", tmp_path / "export")
    export_variant(run, tmp_path / "report", tmp_path / "export", overwrite=True)
    with pytest.raises(UserError, match="did not write"):
        export_variant(run, tmp_path / "report", tmp_path / "report", overwrite=True)
    run.chosen = None
    with pytest.raises(UserError, match="nothing to export"):
        export_variant(run, tmp_path / "report", tmp_path / "export2")
    assert not (tmp_path / "export2").exists()
