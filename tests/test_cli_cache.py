"""`infopt cache calibrate` through the real console script: the curve, the saved file, errors on one line."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from infopt.serve.cache._calibrate import Calibration
from infopt.serve.cache._pairs import load_pairs

INFOPT = str(Path(sys.executable).parent / "infopt")


def _subset(path: Path, n_pos: int = 70, n_neg: int = 50) -> Path:
    """120 pairs of the bundled calibration split, in the user format."""
    pairs, rng = load_pairs("calibration"), random.Random(0)
    chosen = rng.sample([p for p in pairs if p.same], n_pos) + rng.sample([p for p in pairs if not p.same], n_neg)
    path.write_text("".join(json.dumps({"a": p.a, "b": p.b, "same": p.same, "kind": p.kind}) + "\n" for p in chosen))
    return path


def _infopt(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFOPT, "cache", "calibrate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def _one_error_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2 and not proc.stdout, proc
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("infopt: error: ") and "Fix:" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.slow
def test_calibrates_with_the_real_encoder(tmp_path: Path) -> None:
    pairs = _subset(tmp_path / "pairs.jsonl")
    proc = _infopt(tmp_path, "pairs.jsonl", "--max-false-hit-rate", "0.1")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "calibrated on 120 pairs (70 same, 50 not) with encoder minilm-l3:onnx-int8" in out
    assert "on the calibration pairs themselves — optimistic" in out
    for row in ("infopt cosine+guard (calibrated)", "plain cosine >= 0.7", "plain cosine >= 0.95"):
        assert row in out
    assert "UCB95" in out and "para recall" in out
    cal = Calibration.load(tmp_path / "calibration.json")
    assert cal.encoder == "minilm-l3:onnx-int8" and cal.n_pairs == 120 and cal.max_false_hit_rate == 0.1
    assert cal.enabled and cal.report["cosine+guard"]
    again = _infopt(tmp_path, str(pairs), "--max-false-hit-rate", "0.1")
    _one_error_line(again, "earlier infopt calibration", "--overwrite")


def test_bad_file_is_one_line(tmp_path: Path) -> None:
    lines = _subset(tmp_path / "pairs.jsonl").read_text().splitlines()
    row = json.loads(lines[2])
    del row["same"]
    lines[2] = json.dumps(row)
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    _one_error_line(_infopt(tmp_path, "pairs.jsonl", "--max-false-hit-rate", "0.01"), "line 3", "'same'")
    assert not (tmp_path / "calibration.json").exists()


def test_unrelated_output_is_never_replaced(tmp_path: Path) -> None:
    _subset(tmp_path / "pairs.jsonl")
    (tmp_path / "calibration.json").write_text('{"my": "settings"}\n')
    proc = _infopt(tmp_path, "pairs.jsonl", "--max-false-hit-rate", "0.01", "--overwrite")
    _one_error_line(proc, "did not write", "calibration.json")
    assert (tmp_path / "calibration.json").read_text() == '{"my": "settings"}\n'
