"""What survives a restart (SQLite): the registry of model versions (fingerprint, parent, recipe), which version
answers each served name, the experiments with every observation they were fed, and every decision with its
evidence. A promotion or rollback is one transaction: the experiment's end, the decision and the live version.

    reg = Registry(Path("rollout.sqlite"))
    reg.add_version(manifest, path)
    exp = reg.experiment("clf", current_fp, candidate_fp, "split", 0.1)      # the running one, or a new one
    reg.add_samples(exp.id, [("error", 0.0)]); reg.finish(exp.id, "rolled_back", current_fp, "why", {...})
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infopt.errors import UserError

__all__ = ["Experiment", "Registry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (fingerprint TEXT PRIMARY KEY, name TEXT, path TEXT, parent TEXT,
    recipe TEXT, method TEXT, added REAL);
CREATE TABLE IF NOT EXISTS live (model TEXT PRIMARY KEY, fingerprint TEXT, since REAL);
CREATE TABLE IF NOT EXISTS experiments (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT, current TEXT,
    candidate TEXT, mode TEXT, share REAL, status TEXT, started REAL, ended REAL, reason TEXT);
CREATE TABLE IF NOT EXISTS samples (experiment INTEGER, metric TEXT, x REAL);
CREATE INDEX IF NOT EXISTS samples_by_experiment ON samples (experiment);
CREATE TABLE IF NOT EXISTS decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, experiment INTEGER, model TEXT,
    at REAL, decision TEXT, fingerprint TEXT, reason TEXT, evidence TEXT);
"""


@dataclass(frozen=True)
class Experiment:
    """One candidate against one current version under one served name."""

    id: int
    model: str
    current: str
    candidate: str
    mode: str
    share: float
    status: str
    """running, promoted or rolled_back."""
    started: float
    ended: float | None
    reason: str | None


class Registry:
    """One SQLite file (WAL), used from one process; every write is its own transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise UserError(f"Cannot open the rollout database {self.path} ({e}).",
                            "pass a writable path (rollout.database, --rollout-db).") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> sqlite3.Cursor:
        """Run the statements in one transaction; the last one's cursor."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = None
                for sql, args in statements:
                    cur = self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        assert cur is not None
        return cur

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------ versions

    def add_version(self, fingerprint: str, name: str, path: str, parent: str | None,
                    recipe: list[dict[str, Any]], method: str) -> None:
        """Record a model version (once per fingerprint)."""
        self._write([("INSERT OR IGNORE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (fingerprint, name, path, parent, json.dumps(recipe), method, time.time()))])

    def versions(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT fingerprint, name, path, parent, recipe, method, added FROM versions ORDER BY added")
        return [{"fingerprint": r[0], "name": r[1], "path": r[2], "parent": r[3], "recipe": json.loads(r[4]),
                 "method": r[5], "added": r[6]} for r in rows]

    def live(self, model: str) -> str | None:
        """The fingerprint answering `model`, if recorded."""
        rows = self._rows("SELECT fingerprint FROM live WHERE model = ?", (model,))
        return rows[0][0] if rows else None

    def set_live(self, model: str, fingerprint: str) -> None:
        self._write([("INSERT OR REPLACE INTO live VALUES (?, ?, ?)", (model, fingerprint, time.time()))])

    # ------------------------------------------------------------ experiments

    def _experiment(self, row: tuple[Any, ...]) -> Experiment:
        return Experiment(*row)

    def experiment(self, model: str, current: str, candidate: str, mode: str, share: float) -> Experiment:
        """The latest experiment of `candidate` against `current` under `model` in this mode and share (resumed
        after a restart, or its final state), else a new running one."""
        rows = self._rows("SELECT * FROM experiments WHERE model = ? AND current = ? AND candidate = ? AND mode = ? "
                          "AND share = ? ORDER BY id DESC LIMIT 1", (model, current, candidate, mode, share))
        if rows:
            return self._experiment(rows[0])
        cur = self._write([("INSERT INTO experiments (model, current, candidate, mode, share, status, started) "
                            "VALUES (?, ?, ?, ?, ?, 'running', ?)", (model, current, candidate, mode, share,
                                                                     time.time()))])
        return self.get(int(cur.lastrowid or 0))

    def get(self, experiment: int) -> Experiment:
        return self._experiment(self._rows("SELECT * FROM experiments WHERE id = ?", (experiment,))[0])

    def add_samples(self, experiment: int, samples: list[tuple[str, float]]) -> None:
        """Observations fed to the experiment (replayed on resume)."""
        if samples:
            with self._lock:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT INTO samples VALUES (?, ?, ?)",
                                     [(experiment, m, float(x)) for m, x in samples])
                self._db.execute("COMMIT")

    def samples(self, experiment: int) -> list[tuple[str, float]]:
        return [(m, x) for m, x in self._rows("SELECT metric, x FROM samples WHERE experiment = ? ORDER BY rowid",
                                              (experiment,))]

    def finish(self, experiment: int, status: str, live: str, decision: str, reason: str,
               evidence: dict[str, Any]) -> None:
        """End the experiment, record the decision and switch the live version, atomically."""
        exp = self.get(experiment)
        now = time.time()
        self._write([
            ("UPDATE experiments SET status = ?, ended = ?, reason = ? WHERE id = ?",
             (status, now, reason, experiment)),
            ("INSERT INTO decisions (experiment, model, at, decision, fingerprint, reason, evidence) "
             "VALUES (?, ?, ?, ?, ?, ?, ?)",
             (experiment, exp.model, now, decision, live, reason, json.dumps(evidence))),
            ("INSERT OR REPLACE INTO live VALUES (?, ?, ?)", (exp.model, live, now)),
        ])

    def record(self, model: str, decision: str, fingerprint: str, reason: str, evidence: dict[str, Any],
               experiment: int | None = None) -> None:
        """A decision outside an experiment's end (a manual switch), with the live version, atomically."""
        now = time.time()
        self._write([
            ("INSERT INTO decisions (experiment, model, at, decision, fingerprint, reason, evidence) "
             "VALUES (?, ?, ?, ?, ?, ?, ?)", (experiment, model, now, decision, fingerprint, reason,
                                              json.dumps(evidence))),
            ("INSERT OR REPLACE INTO live VALUES (?, ?, ?)", (model, fingerprint, now)),
        ])

    def decisions(self, model: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, args = ("WHERE model = ?", (model,)) if model else ("", ())
        rows = self._rows(f"SELECT experiment, model, at, decision, fingerprint, reason, evidence FROM decisions "
                          f"{where} ORDER BY id DESC LIMIT ?", (*args, limit))
        return [{"experiment": r[0], "model": r[1], "at": r[2], "decision": r[3], "fingerprint": r[4],
                 "reason": r[5], "evidence": json.loads(r[6])} for r in rows]
