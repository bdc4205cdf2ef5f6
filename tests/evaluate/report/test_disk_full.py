"""The disk of the report folder full: one clear error (exit 2, naming the disk and the fix), nothing half-written
in the output folder, nothing of the user's deleted. ENOSPC injected at the write call, a real tiny tmpfs (when
this process may mount one) and the real /dev/full."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infopt._atomic import atomic_dir
from infopt.cli import main
from infopt.data import DataConfig
from infopt.errors import UserError
from infopt.evaluate import BenchConfig, write_report
from infopt.evaluate._results import RunResult
from infopt.models import LoadedModel, save_model
from infopt.optimize import OptimizeConfig, optimize


def _full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _assert_one_clear_error(message: str, where: Path) -> None:
    assert "full" in message and str(where) in message and "Fix: free some space" in message, message


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted for this test (skipped where this process may not mount one)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> Path:
    """Fill the disk of `folder` with one file (the user's); returns it."""
    filler = folder / "filler.bin"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def test_enospc_at_the_write_is_one_user_error_and_leaves_nothing(
        optimized: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "notes.txt"
    mine.write_text("the user's own file")
    monkeypatch.setattr(Path, "write_text", _full)
    with pytest.raises(UserError) as e, atomic_dir(tmp_path / "report", "report") as folder:
        write_report(optimized, folder)
    _assert_one_clear_error(str(e.value), tmp_path / "report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no report, no temporary folder
    monkeypatch.undo()
    assert mine.read_text() == "the user's own file"


def test_a_full_tmpfs_under_optimize_and_report(
        tiny_bert_classifier: LoadedModel, reviews_csv: Path, tiny_disk: Path, tmp_path: Path,
        optimized: RunResult, capsys: pytest.CaptureFixture[str]) -> None:
    save_model(tiny_bert_classifier, tmp_path / "tiny")  # a few MB: more than the 2 MB disk holds
    mine = tiny_disk / "keep.txt"
    mine.write_text("the user's own file")
    config = OptimizeConfig(model=str(tmp_path / "tiny"), data=DataConfig(str(reviews_csv), "review", "sentiment"),
                            output=tiny_disk / "run", recipes=("dynamic-int8",), bench=BenchConfig(isolate=False),
                            reuse_builds=False)
    with pytest.raises(UserError) as e:
        optimize(config)
    assert "full" in str(e.value) and "Fix: free some space" in str(e.value), e.value
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["keep.txt"]  # nothing half-written left
    assert mine.read_text() == "the user's own file"

    report = tiny_disk / "report"  # `infopt report DIR` on a disk that filled up since
    report.mkdir()
    (report / "results.json").write_text(optimized.to_json())
    filler = _fill(tiny_disk)
    assert main(["report", str(report)]) == 2
    err = capsys.readouterr().err
    assert err.count("infopt: error:") == 1 and "Traceback" not in err and "full" in err, err
    assert sorted(p.name for p in report.iterdir()) == ["results.json"]  # no partial report.md / temp file
    assert RunResult.from_json((report / "results.json").read_text()).model == optimized.model
    filler.unlink()
    assert main(["report", str(report)]) == 0  # space freed: it works
    assert (report / "report.md").is_file()


def test_stdout_on_dev_full_is_one_clear_error() -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    code = ("import sys; from infopt.cli import main; sys.exit(main(['models']))")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-c", code], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("infopt: error:") and "No space left" in lines[0], lines
