"""The quantize and prune jobs: check the output first, read only the data the config needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from infopt.compress.prune import config_from_name as prune_config
from infopt.compress.quantize import config_from_name as quant_config
from infopt.data import DataConfig
from infopt.errors import UserError
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize import PruneJob, QuantizeJob, run_stage_job


@pytest.fixture
def model_dir(tmp_path: Path, tiny_bert_classifier: LoadedModel) -> Path:
    save_model(tiny_bert_classifier, tmp_path / "tiny")
    return tmp_path / "tiny"


def test_a_scheme_without_needs_reads_no_data(model_dir: Path, tmp_path: Path) -> None:
    summary = run_stage_job(QuantizeJob(str(model_dir), quant_config("dynamic-int8-emb"), tmp_path / "q"))
    assert summary["method"] == "quantize:dynamic-int8-emb" and summary["weights_mb"] < summary["input_weights_mb"]
    assert load_model(tmp_path / "q").manifest.parent == load_model(model_dir).manifest.fingerprint


def test_a_config_that_needs_data_asks_for_it(model_dir: Path, tmp_path: Path, reviews_csv: Path) -> None:
    with pytest.raises(UserError, match="--data"):  # the tiny model does not say what it was trained on
        run_stage_job(QuantizeJob(str(model_dir), quant_config("onnx-static-int8"), tmp_path / "s"))
    assert not (tmp_path / "s").exists()
    data = DataConfig(str(reviews_csv), "review", "sentiment")
    job = PruneJob(str(model_dir), prune_config("wanda", sparsity=0.5), tmp_path / "w", data)
    assert run_stage_job(job)["format"] == "sparse"


def test_the_output_is_checked_before_the_model_is_loaded(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"notes\.txt"):
        run_stage_job(QuantizeJob(str(tmp_path / "no-such-model"), quant_config("dynamic-int8"), tmp_path / "mine"))
