"""The `infopt` command through its real console-script entry point."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from infopt.cli import main
from infopt.data import TextDataset
from infopt.models import LoadedModel, load_model, save_model

INFOPT = str(Path(sys.executable).parent / "infopt")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFOPT, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def run_here(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`run` in this process (`main`): the same code and messages without a new interpreter's start-up (seconds);
    for checks of what a command decides, next to `run`'s checks of what the installed script prints."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["infopt", *args], code, out, err)


def assert_user_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Fix:" in lines[0]
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def model_dir(tmp_path: Path, tiny_bert_classifier: LoadedModel) -> Path:
    save_model(tiny_bert_classifier, tmp_path / "tiny")
    return tmp_path / "tiny"


def test_models_lists_bundled_models() -> None:
    proc = run("models")
    assert proc.returncode == 0, proc.stderr
    for name in ("minilm-l6-rt", "minilm-l6", "minilm-l3", "smollm2-135m"):
        assert name in proc.stdout


def test_missing_model_path(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert_user_error(run("optimize", "--model", str(tmp_path / "nope"), "--output", str(out)), "nope")
    assert not out.exists()


def test_folder_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    out = tmp_path / "report"
    assert_user_error(run("bench", "--model", str(tmp_path / "notes"), "--output", str(out)), "config.json")
    assert not out.exists()


def test_csv_without_the_named_columns(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "other.csv"
    csv.write_text("a,b\nx,1\ny,0\n")
    out = tmp_path / "report"
    proc = run_here(capsys, "optimize", "--model", str(model_dir), "--data", str(csv), "--text-column", "review",
                    "--label-column", "sentiment", "--output", str(out))
    assert_user_error(proc, "review", "--text-column")
    assert not out.exists()


def test_empty_dataset(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "empty.csv"
    csv.write_text("review,sentiment\n")
    out = tmp_path / "report"
    proc = run_here(capsys, "optimize", "--model", str(model_dir), "--data", str(csv), "--text-column", "review",
                    "--label-column", "sentiment", "--output", str(out))
    assert_user_error(proc, "empty")
    assert not out.exists()


def test_unknown_quantization_scheme(tmp_path: Path, model_dir: Path, reviews_csv: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q"
    assert_user_error(run("quantize", "--model", str(model_dir), "--scheme", "int3", "--output", str(out)), "int3")
    assert not out.exists()
    proc = run_here(capsys, "optimize", "--model", str(model_dir), "--data", str(reviews_csv), "--text-column",
                    "review", "--label-column", "sentiment", "--recipes", "dynamic-int8,int3", "--output", str(out))
    assert_user_error(proc, "int3")
    assert not out.exists()


def test_optimize_on_a_users_model_and_csv(tmp_path: Path, model_dir: Path, reviews_csv: Path) -> None:
    out = tmp_path / "runs" / "reviews"
    proc = run("optimize", "--model", str(model_dir), "--data", str(reviews_csv), "--text-column", "review",
               "--label-column", "sentiment", "--recipes", "dynamic-int8", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "| variant |" in (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert [v["name"] for v in results["variants"]] == ["tiny-bert-classifier (baseline)", "dynamic-int8"]
    assert all(0 <= v["quality"]["accuracy"] <= 100 for v in results["variants"])
    assert (out / "variants" / "dynamic-int8" / "infopt.json").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_optimize_scores_a_separate_eval_file_whole(tmp_path: Path, model_dir: Path, reviews_csv: Path) -> None:
    held_out = tmp_path / "held-out.csv"
    rows = [("a truly great film", "positive"), ("a dull and awful film", "negative")] * 15
    held_out.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    out = tmp_path / "run"
    proc = run("optimize", "--model", str(model_dir), "--data", str(reviews_csv), "--text-column", "review",
               "--label-column", "sentiment", "--eval-data", str(held_out), "--eval-text-column", "text",
               "--eval-label-column", "label", "--recipes", "dynamic-int8", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert [v["n_eval"] for v in results["variants"]] == [30, 30]  # all of the file, none of reviews.csv


def test_quantize_saves_a_loadable_variant(tmp_path: Path, model_dir: Path) -> None:
    out = tmp_path / "q8"
    proc = run("quantize", "--model", str(model_dir), "--scheme", "dynamic-int8", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "infopt.json").read_text())
    assert manifest["method"] == "quantize:dynamic-int8"


def test_quantize_calibrates_on_the_users_csv(tmp_path: Path, model_dir: Path, reviews_csv: Path) -> None:
    out = tmp_path / "smooth"
    proc = run("quantize", "--model", str(model_dir), "--scheme", "onnx-smooth-int8", "--data", str(reviews_csv),
               "--text-column", "review", "--label-column", "sentiment", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "infopt.json").read_text())
    assert manifest["format"] == "onnx" and manifest["method"] == "quantize:onnx-smooth-int8"
    info = manifest["metrics"]["quantize"]
    assert 0 < info["calibration"]["texts"] <= 40  # from the CSV's train split
    assert sum(info["smoothing"].values()) == 14  # every Linear of the tiny classifier


WRITERS = {
    "quantize": ["quantize", "--scheme", "dynamic-int8"],
    "prune": ["prune", "--method", "magnitude", "--sparsity", "0.5"],
    "optimize": ["optimize", "--recipes", "dynamic-int8"],
    "distill": ["distill", "--student", "1", "--steps", "1"],
}


def _writer(cmd: str, model_dir: Path, out: Path, *extra: str) -> list[str]:
    model_flag = "--teacher" if cmd == "distill" else "--model"
    return [*WRITERS[cmd], model_flag, str(model_dir), "--output", str(out), *extra]


@pytest.mark.parametrize("cmd", list(WRITERS))
def test_an_output_folder_with_the_users_files_is_refused_before_any_work(
    cmd: str, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert_user_error(run_here(capsys, *_writer(cmd, model_dir, out)), "notes.txt", "new folder")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "tiny"]


@pytest.mark.parametrize("cmd", list(WRITERS))
def test_an_output_file_is_never_replaced(cmd: str, tmp_path: Path, model_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.txt"
    out.write_text("keep me")
    assert_user_error(run_here(capsys, *_writer(cmd, model_dir, out, "--overwrite")), "is a file")
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("cmd", ["quantize", "optimize", "prune", "distill"])
def test_an_output_that_cannot_be_written_is_one_line(cmd: str, model_dir: Path) -> None:
    # through the installed script, for every writer: nothing else is printed
    assert_user_error(run(*_writer(cmd, model_dir, Path("/proc/nope/x"))), "/proc/nope", "cannot be written")


def test_an_earlier_output_is_replaced_only_with_overwrite(tmp_path: Path, model_dir: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q8"
    assert run_here(capsys, *_writer("quantize", model_dir, out)).returncode == 0
    first = json.loads((out / "infopt.json").read_text())["created"]
    assert_user_error(run_here(capsys, *_writer("quantize", model_dir, out)), "--overwrite")
    assert json.loads((out / "infopt.json").read_text())["created"] == first
    proc = run_here(capsys, "quantize", "--scheme", "dynamic-int8-emb", "--model", str(model_dir), "--output",
                    str(out), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "infopt.json").read_text())["method"] == "quantize:dynamic-int8-emb"
    report = tmp_path / "report"
    report.mkdir()
    (report / "results.json").write_text("{}")  # an infopt report, not a model
    refused = run_here(capsys, *_writer("quantize", model_dir, report, "--overwrite"))
    assert_user_error(refused, "holds an infopt report")


def test_prune_unstructured(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(model_dir), "--method", "magnitude", "--sparsity", "0.9",
                 "--output", str(out)]) == 0
    assert "format sparse" in capsys.readouterr().out
    manifest = json.loads((out / "infopt.json").read_text())
    assert manifest["recipe"][-1]["config"]["sparsity"] == 0.9 and (out / "sparse.safetensors").exists()
    assert load_model(out).manifest.method == "prune:magnitude"


def test_prune_structured_with_recovery(model_dir: Path, reviews_csv: Path, tmp_path: Path) -> None:
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


def test_prune_pattern_sets_its_sparsity(model_dir: Path, tmp_path: Path) -> None:
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
def test_prune_bad_flags_are_one_line_errors(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: list[str]
) -> None:
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(model_dir), *flags, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Fix:" in err and all(w in err for w in words)
    assert not out.exists()


# --- infopt distill ---


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


@pytest.mark.usefixtures("private_cache")
def test_distill_saves_a_student(
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


@pytest.mark.usefixtures("private_cache")
def test_distill_self_distillation_saves_an_early_exit_model(
    teacher_folder: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ee"
    assert main(_args(teacher_folder, data_file, out, "--scheme", "self")) == 0
    assert (out / "exits.safetensors").is_file()
    ee = load_model(out)
    assert ee.manifest.format == "early-exit" and ee.model.exit_layers == (1, 2, 3)


@pytest.mark.usefixtures("private_cache")
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alpha", "1.5"], "alpha"),
        (["--temperature", "0"], "temperature"),
        (["--temperature", "-1"], "temperature"),
    ],
)
def test_distill_bad_settings_exit_2(
    teacher_folder: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
    message: str,
) -> None:
    assert main(_args(teacher_folder, data_file, tmp_path / "x", *extra)) == 2
    assert message in capsys.readouterr().err


@pytest.mark.usefixtures("private_cache")
def test_distill_label_mismatch_and_empty_data_exit_2(
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


def test_teacher_weights_that_are_not_numbers_are_one_line(tmp_path: Path, model_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "student"
    proc = run_here(capsys, "distill", "--teacher", str(model_dir), "--teacher-weights", "0.5,:", "--output", str(out))
    assert_user_error(proc, "--teacher-weights", "0.5,:")
    assert not out.exists()
