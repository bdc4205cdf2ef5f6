"""Output safety: nothing of the user's is deleted or replaced; nothing half-written is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from infopt._atomic import MARKER_FILE, atomic_dir, atomic_file, check_output, output_kind
from infopt.errors import UserError


def test_new_and_empty_targets_are_fine(tmp_path: Path) -> None:
    assert check_output(tmp_path / "a" / "b", "model") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists(), "the probe must not leave the folders it created"
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", "model")


def test_a_folder_with_the_users_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"did not write \(e.g. notes.txt\)"):
        check_output(tmp_path, "model", overwrite=True)


def test_a_file_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("mine")
    with pytest.raises(UserError, match="is a file"):
        check_output(tmp_path / "f", "report", overwrite=True)


def test_an_earlier_output_needs_overwrite_and_the_same_kind(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "out", "report") as tmp:
        (tmp / "report.md").write_text("one")
    assert output_kind(tmp_path / "out") == "report" and (tmp_path / "out" / MARKER_FILE).is_file()
    with pytest.raises(UserError, match="--overwrite"):
        check_output(tmp_path / "out", "report")
    with pytest.raises(UserError, match="not a model"):
        check_output(tmp_path / "out", "model", overwrite=True)
    with atomic_dir(tmp_path / "out", "report", overwrite=True) as tmp:
        (tmp / "report.md").write_text("two")
    assert (tmp_path / "out" / "report.md").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "old and temporary folders are gone"


def test_folders_written_before_the_marker_are_recognised(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "infopt.json").write_text("{}")
    assert output_kind(tmp_path / "m") == "model"
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text("{}")
    assert output_kind(tmp_path / "r") == "report"


def test_an_unwritable_target_fails_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot be written"):
        check_output("/proc/nope/x", "model")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot be written"):
        check_output(blocker / "sub" / "x", "model")


def test_a_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out", "model") as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_appears_during_the_work_is_not_replaced(tmp_path: Path) -> None:
    with pytest.raises(UserError), atomic_dir(tmp_path / "out", "model"):
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "notes.txt").write_text("mine")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_file(tmp_path: Path) -> None:
    with atomic_file(tmp_path / "c" / "x.bin") as tmp:
        tmp.write_bytes(b"1")
    assert (tmp_path / "c" / "x.bin").read_bytes() == b"1"
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "c" / "x.bin") as tmp:
        tmp.write_bytes(b"2")
        raise RuntimeError
    assert (tmp_path / "c" / "x.bin").read_bytes() == b"1" and len(list((tmp_path / "c").iterdir())) == 1
