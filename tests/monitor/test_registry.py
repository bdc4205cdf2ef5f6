"""The SQLite registry: versions, the live version, experiments resumed, atomic decisions (a real file)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from infopt.errors import UserError
from infopt.monitor import Registry


def test_versions_experiments_and_decisions_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    reg = Registry(path)
    reg.add_version("fp1", "base", "/m/base", None, [], "baseline")
    reg.add_version("fp2", "int8", "/m/int8", "fp1", [{"stage": "quantize", "config": {}}], "onnx-int8")
    reg.add_version("fp2", "again", "/x", None, [], "x")  # once per fingerprint
    exp = reg.experiment("clf", "fp1", "fp2", "split", 0.1)
    assert exp.status == "running"
    reg.add_samples(exp.id, [("error", 0.0), ("accuracy", 0.5)])
    reg.close()
    reg = Registry(path)
    assert [v["fingerprint"] for v in reg.versions()] == ["fp1", "fp2"]
    assert reg.versions()[1]["parent"] == "fp1" and reg.versions()[1]["recipe"][0]["stage"] == "quantize"
    again = reg.experiment("clf", "fp1", "fp2", "split", 0.1)
    assert again.id == exp.id and reg.samples(exp.id) == [("error", 0.0), ("accuracy", 0.5)]
    assert reg.experiment("clf", "fp1", "fp2", "shadow", 0.1).id != exp.id  # another design: another experiment
    reg.finish(exp.id, "rolled_back", "fp1", "rollback", "shown bad: quality_drop", {"bounds": [1]})
    assert reg.get(exp.id).status == "rolled_back" and reg.live("clf") == "fp1"
    assert reg.decisions("clf")[0]["evidence"] == {"bounds": [1]}
    reg.record("clf", "switch", "fp2", "manual", {})
    assert reg.live("clf") == "fp2"


def test_a_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite")
    reg.set_live("clf", "fp1")
    with pytest.raises(sqlite3.Error):
        reg._write([("INSERT OR REPLACE INTO live VALUES (?, ?, ?)", ("clf", "fp2", 0.0)), ("NOT SQL", ())])
    assert reg.live("clf") == "fp1"


def test_an_unwritable_path_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="rollout database"):
        Registry(tmp_path / "file" / "r.sqlite")
