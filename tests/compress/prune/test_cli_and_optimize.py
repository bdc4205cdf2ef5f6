"""`infopt prune` and the pruning variants of `infopt optimize`, on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infopt.cli import main
from infopt.data import DataConfig
from infopt.errors import InfoptError
from infopt.evaluate import BenchConfig
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize import DEFAULT_RECIPES, OptimizeConfig, optimize, parse_recipes


@pytest.fixture
def model_dir(tmp_path: Path, tiny_bert_classifier: LoadedModel) -> Path:
    return save_model(tiny_bert_classifier, tmp_path / "tiny") and tmp_path / "tiny"


def test_cli_unstructured(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(model_dir), "--method", "magnitude", "--sparsity", "0.9",
                 "--output", str(out)]) == 0
    assert "format sparse" in capsys.readouterr().out
    manifest = json.loads((out / "infopt.json").read_text())
    assert manifest["recipe"][-1]["config"]["sparsity"] == 0.9 and (out / "sparse.safetensors").exists()
    assert load_model(out).manifest.method == "prune:magnitude"


def test_cli_structured_with_recovery(model_dir: Path, reviews_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    code = main(["prune", "--model", str(model_dir), "--method", "structured", "--ffn", "0.5", "--layers", "1,",
                 "--importance", "taylor", "--recover-epochs", "0.2", "--data", str(reviews_csv),
                 "--text-column", "review", "--label-column", "sentiment", "--output", str(out)])
    assert code == 0
    manifest = json.loads((out / "infopt.json").read_text())
    step = manifest["recipe"][-1]["config"]
    assert step["layers"] == [1] and step["recovery"]["epochs"] == 0.2
    assert manifest["metrics"]["prune"]["recovery"]["distilled"] is True
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1


def test_cli_pattern_sets_its_sparsity(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(model_dir), "--method", "magnitude", "--pattern", "1:4",
                 "--output", str(out)]) == 0
    assert json.loads((out / "infopt.json").read_text())["recipe"][-1]["config"]["sparsity"] == 0.75


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--method", "magnitude", "--sparsity", "1.0"], ["sparsity", "[0, 1)"]),
        (["--method", "magnitude", "--heads", "0.5"], ["no option heads"]),
        (["--method", "structured", "--heads", "0.9"], ["all 2 attention heads"]),
        (["--method", "structured", "--layers", "x"], ["--layers"]),
    ],
)
def test_cli_bad_flags_are_one_line_errors(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: list[str]
) -> None:
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(model_dir), *flags, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Fix:" in err and all(w in err for w in words)
    assert not out.exists()


def test_recipe_names() -> None:
    assert "prune-structured+onnx-int8" in DEFAULT_RECIPES["classification"]
    assert {"prune-wanda-50", "prune-2:4"} <= set(DEFAULT_RECIPES["causal-lm"])
    named = parse_recipes(("prune-unstructured-50", "prune-magnitude-2:4", "prune-structured+weight-int8"), "causal-lm")
    assert [c.name for c in named] == ["prune-unstructured-50", "prune-magnitude-2:4", "prune-structured+weight-int8"]
    with pytest.raises(InfoptError, match="Unknown recipe"):
        parse_recipes(("prune-everything",), "classification")


def test_optimize_measures_pruned_variants_next_to_the_baseline(model_dir: Path, reviews_csv: Path,
                                                                tmp_path: Path) -> None:
    config = OptimizeConfig(
        model=str(model_dir),
        data=DataConfig(str(reviews_csv), "review", "sentiment"),
        output=tmp_path / "report",
        recipes=("prune-structured", "prune-structured+onnx-int8", "prune-unstructured-90"),
        bench=BenchConfig(isolate=False),
    )
    run, folder = optimize(config)
    names = [v.name for v in run.variants]
    assert names[1:] == ["prune-structured", "prune-structured+onnx-int8", "prune-unstructured-90"]
    structured, both, sparse = run.variants[1:]
    assert structured.params < run.baseline.params and both.size_mb < structured.size_mb
    assert sparse.size_mb < run.baseline.size_mb
    assert any("not expected to be faster" in n for n in sparse.notes)
    assert "not expected to be faster" in (folder / "report.md").read_text()
    recipe = load_model(folder / "variants" / "prune-structured+onnx-int8").manifest.recipe
    assert [s["stage"] for s in recipe] == ["prune", "quantize"]
