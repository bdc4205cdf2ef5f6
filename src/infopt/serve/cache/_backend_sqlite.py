"""The embedded default backend: one SQLite file (WAL mode, so several processes may share it), one connection
guarded by a lock (so several threads may share the object); expired rows are pruned every `prune_every` puts.

A file that is not a SQLite database is moved aside (`<name>.corrupt-<time>`) and a new one is made.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from infopt.serve.cache._backends import Backend

__all__ = ["SQLiteBackend"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL, size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires);
CREATE TABLE IF NOT EXISTS tags (tag TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (tag, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_key ON tags (key);
"""
_LIVE = "(e.expires IS NULL OR e.expires > ?)"


class SQLiteBackend(Backend):
    """Entries in the SQLite file `path` (its folder is made); they survive a restart."""

    name = "sqlite"

    def __init__(self, path: str | Path, *, prune_every: int = 256, timeout_s: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self.prune_every = prune_every
        self.timeout_s = timeout_s
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._puts = 0
        self._guard("open", self._conn, None)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=self.timeout_s, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _conn(self) -> sqlite3.Connection:
        with self._lock:
            if self._db is None:
                try:
                    self._db = self._open()
                except sqlite3.DatabaseError as e:
                    if "not a database" not in str(e) and "malformed" not in str(e):
                        raise
                    aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
                    log.warning("cache file %s is not a SQLite database (%s); moved to %s", self.path, e, aside)
                    self.path.rename(aside)
                    for suffix in ("-wal", "-shm"):
                        self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
                    self._db = self._open()
            return self._db

    def _get(self, key: str) -> bytes | None:
        with self._lock:
            row = self._conn().execute(f"SELECT value FROM entries e WHERE key = ? AND {_LIVE}",
                                       (key, time.time())).fetchone()
        return None if row is None else bytes(row[0])

    def _put(self, key: str, data: bytes, expires: float | None, tags: tuple[str, ...]) -> bool:
        with self._lock:
            db = self._conn()
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM tags WHERE key = ?", (key,))
                db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", (key, data, expires, len(data)))
                db.executemany("INSERT OR IGNORE INTO tags VALUES (?, ?)", [(t, key) for t in tags])
            self._puts += 1
            if self._puts % self.prune_every == 0:
                self.prune()
        return True

    def prune(self) -> int:
        """Delete the expired rows; the number deleted."""
        with self._lock:
            db = self._conn()
            with db:
                db.execute("BEGIN IMMEDIATE")
                now = time.time()
                db.execute("DELETE FROM tags WHERE key IN (SELECT key FROM entries WHERE expires <= ?)", (now,))
                return db.execute("DELETE FROM entries WHERE expires <= ?", (now,)).rowcount

    def _delete(self, key: str) -> bool:
        with self._lock:
            db = self._conn()
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM tags WHERE key = ?", (key,))
                return db.execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount > 0

    def _invalidate(self, tag: str) -> int:
        with self._lock:
            db = self._conn()
            with db:
                db.execute("BEGIN IMMEDIATE")
                keys = [k for (k,) in db.execute("SELECT key FROM tags WHERE tag = ?", (tag,))]
                db.executemany("DELETE FROM tags WHERE key = ?", [(k,) for k in keys])
                return sum(db.execute("DELETE FROM entries WHERE key = ?", (k,)).rowcount for k in keys)

    def _clear(self) -> int:
        with self._lock:
            db = self._conn()
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM tags")
                return db.execute("DELETE FROM entries").rowcount

    def _usage(self, tag: str | None) -> tuple[int, int]:
        now = time.time()
        with self._lock:
            if tag is None:
                row = self._conn().execute(f"SELECT COUNT(*), SUM(size) FROM entries e WHERE {_LIVE}",
                                           (now,)).fetchone()
            else:
                row = self._conn().execute(
                    f"SELECT COUNT(*), SUM(e.size) FROM tags t JOIN entries e ON e.key = t.key "
                    f"WHERE t.tag = ? AND {_LIVE}", (tag, now)).fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    def _keys(self, tag: str) -> list[str]:
        with self._lock:
            rows = self._conn().execute(f"SELECT t.key FROM tags t JOIN entries e ON e.key = t.key "
                                        f"WHERE t.tag = ? AND {_LIVE}", (tag, time.time())).fetchall()
        return [str(k) for (k,) in rows]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
