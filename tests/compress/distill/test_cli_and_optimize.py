"""`infopt distill` and the distilled-student variant of `infopt optimize`, on tiny saved models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from infopt.cli import main
from infopt.compress.distill import StudentConfig
from infopt.data import TextDataset
from infopt.errors import InfoptError
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize import StageInputs, build, parse_recipes, parse_student


@pytest.fixture(scope="module")
def teacher_folder(tiny_teacher: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "teacher"
    save_model(tiny_teacher, folder)
    return folder


@pytest.fixture(scope="module")
def data_file(reviews: TextDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "reviews.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        for t, y in zip(reviews.texts * 2, reviews.labels * 2, strict=True):
            w.writerow([t, reviews.label_names[y]])
    return path


def _args(teacher: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["distill", "--teacher", str(teacher), "--data", str(data), "--text-column", "review",
            "--label-column", "sentiment", "--output", str(out), "--max-length", "16", "--lr", "1e-3",
            "--train-batch-size", "16", *extra]


def test_parse_student() -> None:
    assert parse_student("every-other") == StudentConfig()
    assert parse_student("2") == StudentConfig(num_layers=2)
    assert parse_student("layers=0,3") == StudentConfig(layers=(0, 3))
    assert parse_student("random:2") == StudentConfig(init="random", num_layers=2)
    assert parse_student("minilm-l3") == "minilm-l3"
    with pytest.raises(InfoptError):
        parse_student("layers=a,b")


def test_cli_distill_saves_a_student(
    teacher_folder: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "student"
    assert main(_args(teacher_folder, data_file, out, "--student", "2", "--epochs", "2",
                      "--temperature", "2", "--alpha", "0.7")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["teacher"]["accuracy"] > 0 and summary["student"]["accuracy"] > 0
    assert {"ece", "ece_scaled", "temperature"} <= set(summary["student"])
    student = load_model(out)
    assert student.model.config.num_hidden_layers == 2
    assert student.manifest.recipe[-1]["config"]["temperature"] == 2.0
    assert "test_accuracy" in student.manifest.metrics


def test_cli_self_distillation_saves_an_early_exit_model(
    teacher_folder: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ee"
    assert main(_args(teacher_folder, data_file, out, "--scheme", "self")) == 0
    assert (out / "exits.safetensors").is_file()
    ee = load_model(out)
    assert ee.manifest.format == "early-exit" and ee.model.exit_layers == (1, 2, 3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alpha", "1.5"], "alpha"),
        (["--temperature", "0"], "temperature"),
        (["--temperature", "-1"], "temperature"),
    ],
)
def test_cli_bad_settings_exit_2(
    teacher_folder: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
    message: str,
) -> None:
    assert main(_args(teacher_folder, data_file, tmp_path / "x", *extra)) == 2
    assert message in capsys.readouterr().err


def test_cli_label_mismatch_and_empty_data_exit_2(
    teacher_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.csv"
    other.write_text("review,sentiment\n" + "".join(f"text {i},{'rotten' if i % 2 else 'fresh'}\n" for i in range(40)))
    assert main(_args(teacher_folder, other, tmp_path / "x")) == 2
    assert "do not match the data's" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("review,sentiment\n")
    assert main(_args(teacher_folder, empty, tmp_path / "y")) == 2
    assert "empty" in capsys.readouterr().err


def test_the_distill_recipe_builds_a_student(tiny_teacher: LoadedModel, reviews: TextDataset) -> None:
    (recipe,) = parse_recipes(["distill-l3"], "classification")
    assert recipe.needs() == {"train"}
    student = build(recipe, tiny_teacher, StageInputs(reviews.texts[:8], reviews))
    assert student.manifest.name == "distill-l3" and student.model.config.num_hidden_layers == 3
    with pytest.raises(InfoptError, match="train split"):
        build(recipe, tiny_teacher, StageInputs(reviews.texts[:8], None))
    with pytest.raises(InfoptError, match="Unknown recipe"):
        parse_recipes(["distill-lx"], "classification")
