"""Distillation under `torchrun --nproc-per-node 2` (gloo on CPU): the student one process gets, within
tests/train/_ddp.py's TOLERANCE; the teacher runs on rank 0 only; `torchrun -m infopt distill` writes once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerBase

from infopt._atomic import output_kind
from infopt.models import load_model
from tests.train._ddp import (  # type: ignore[import-not-found]
    TOLERANCE,
    env,
    max_diff,
    prepare,
    result,
    runs,
    torchrun,
)


@pytest.mark.slow  # two subprocesses (one with two ranks), shared with tests/train: ~35 s on 2 cores
def test_ddp_distillation_gives_the_one_process_student(
    tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase
) -> None:
    folder = runs(tmp_path_factory, tokenizer)
    before = load_model(folder / "student").model.state_dict()
    for mode in ("distill", "distill-nocache"):
        one, r0, r1 = result(folder, "one", mode), result(folder, "ddp", mode, 0), result(folder, "ddp", mode, 1)
        assert max_diff(one["state"], r0["state"]) < TOLERANCE, mode
        assert max_diff(r0["state"], r1["state"]) == 0.0, mode
        assert max_diff(before, one["state"]) > 100 * TOLERANCE, mode
        # 96 texts, 64 per teacher batch: two teacher forward calls in all, every one of them on rank 0
        assert (one["teacher_calls"], r0["teacher_calls"], r1["teacher_calls"]) == (2, 2, 0), mode
    assert len(list((folder / "cache-ddp" / "teacher-logits").glob("*/logits.safetensors"))) == 1


@pytest.mark.slow  # two torchrun launches of the CLI: ~30 s on a busy 2-core machine
def test_torchrun_m_infopt_distill_writes_once_and_fails_as_one(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, reviews_csv: Path
) -> None:
    folder = prepare(tmp_path / "in", tokenizer)
    out = tmp_path / "student-out"
    args = ["-m", "infopt", "distill", "--teacher", str(folder / "teacher"), "--student", str(folder / "student"),
            "--data", str(reviews_csv), "--text-column", "review", "--label-column", "sentiment",
            "--train-batch-size", "8", "--max-length", "16", "--output", str(out)]
    done = subprocess.run(torchrun(*args), env=env(tmp_path / "cache"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # printed once, by rank 0
    assert summary["output"] == str(out) and output_kind(out) == "model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "in", "reviews.csv", "student-out"]  # no more
    # a folder infopt did not write: rank 0's check fails, both ranks exit 2, one error line
    (bad := tmp_path / "bad").mkdir()
    (bad / "notes.txt").write_text("mine")
    done = subprocess.run(torchrun(*args[:-1], str(bad)), env=env(tmp_path / "cache"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0 and done.stderr.count("infopt: error: The output") == 1, done.stderr[-3000:]
    assert "exitcode: 2" in done.stderr and sorted(p.name for p in bad.iterdir()) == ["notes.txt"]


def test_python_m_infopt_is_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "infopt", "distill", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "--teacher" in done.stdout
