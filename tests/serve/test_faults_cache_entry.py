"""Corrupt cache storage, injected for real: garbage, truncated and misplaced entries in a real SQLite file and a
real Redis (started by the test on a free port), and the SQLite file itself overwritten with garbage before and
while the server runs. Every request is answered 200 with the model's own answer; nothing corrupt is served."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from infopt.models import LoadedModel
from infopt.serve import ModelSpec, ServeCacheConfig, ServeConfig, create_app

from .test_cache_redis_http import _free_port, _start_redis  # type: ignore[import-not-found]

TEXTS = ("a good film", "a bad film", "an odd, long and quiet film")


def _sqlite(tmp_path: Path) -> ServeConfig:
    return ServeConfig(models=(ModelSpec("x", "x"),), cache=ServeCacheConfig(path=str(tmp_path / "c.sqlite")))


def _classify(url: str, text: str) -> httpx.Response:
    r = httpx.post(url + "/v1/classify", json={"model": "clf", "input": text}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def _answers(url: str) -> dict[str, tuple[Any, str | None]]:
    out = {}
    for t in TEXTS:
        r = _classify(url, t)
        out[t] = (r.json()["data"], r.headers.get("x-infopt-cache"))
    return out


def _rows(path: Path) -> dict[str, bytes]:
    with sqlite3.connect(path) as db:
        return {k: bytes(v) for k, v in db.execute("SELECT key, value FROM entries")}


def test_garbage_truncated_and_misplaced_sqlite_entries_are_misses(
        live: Any, tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    config = _sqlite(tmp_path)
    server = live(create_app({"clf": tiny_bert_classifier}, config=config))
    truth = {t: data for t, (data, _) in _answers(server.url).items()}
    server.stop()
    rows = _rows(tmp_path / "c.sqlite")
    assert len(rows) == len(TEXTS)
    (k1, v1), (k2, v2), (k3, _) = rows.items()
    with sqlite3.connect(tmp_path / "c.sqlite") as db:  # on disk, between runs: the next server reads them
        db.execute("UPDATE entries SET value = ? WHERE key = ?", (b"\xff\x00garbage" * 7, k1))
        db.execute("UPDATE entries SET value = ? WHERE key = ?", (v2[: len(v2) // 2], k2))
        db.execute("UPDATE entries SET value = ? WHERE key = ?", (v1, k3))  # another request's intact entry
    again = live(create_app({"clf": tiny_bert_classifier}, config=config))
    for text, (data, hit) in _answers(again.url).items():
        assert hit is None and data == truth[text], text  # recomputed, never the corrupt or misplaced entry
    stats = httpx.get(again.url + "/v1/stats").json()["cache"]["tiers"]["exact"]
    assert stats["corrupt"] >= 3
    for text, (data, hit) in _answers(again.url).items():  # stored anew
        assert hit == "exact" and data == truth[text]


def test_a_garbage_sqlite_file_before_and_during_the_run(
        live: Any, tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database\x00" * 400)
    server = live(create_app({"clf": tiny_bert_classifier}, config=_sqlite(tmp_path)))
    truth = {t: data for t, (data, _) in _answers(server.url).items()}
    aside = list(tmp_path.glob("c.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")  # kept for a look, not deleted
    assert all(hit == "exact" for _, hit in _answers(server.url).values())

    for name in ("c.sqlite", "c.sqlite-wal"):  # overwritten under the running server (a bad disk, a stray write)
        with (tmp_path / name).open("r+b") as f:
            f.write(b"\x13garbage" * 1024)
    for _ in range(3):
        for text, (data, _) in _answers(server.url).items():
            assert data == truth[text]  # from SQLite's own page cache, or from the model: never garbage
    assert httpx.get(server.url + "/ready").status_code == 200
    server.stop()
    restarted = live(create_app({"clf": tiny_bert_classifier}, config=_sqlite(tmp_path)))  # reads the damage
    for _ in range(2):
        for text, (data, _) in _answers(restarted.url).items():
            assert data == truth[text]
    assert httpx.get(restarted.url + "/ready").status_code == 200


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
def test_garbage_in_a_real_redis_entry_is_a_miss(live: Any, tiny_bert_classifier: LoadedModel,
                                                  tmp_path: Path) -> None:
    port = _free_port()
    own = _start_redis(port)
    url, namespace = f"redis://127.0.0.1:{port}/0", f"t{uuid.uuid4().hex[:8]}"
    config = ServeConfig(models=(ModelSpec("x", "x"),),
                         cache=ServeCacheConfig(backend="redis", redis_url=url, namespace=namespace))
    try:
        first = live(create_app({"clf": tiny_bert_classifier}, config=config))
        truth = {t: data for t, (data, _) in _answers(first.url).items()}
        first.stop()
        client = redis.Redis.from_url(url)
        keys = sorted(client.scan_iter(f"{namespace}:e:*"))
        assert len(keys) == len(TEXTS)
        good = bytes(client.get(keys[1]))  # type: ignore[arg-type]
        client.set(keys[0], b"\x00\xffnot an entry")
        client.set(keys[1], good[: len(good) // 3])
        client.set(keys[2], good)  # another request's entry under this key
        second = live(create_app({"clf": tiny_bert_classifier}, config=config))  # a fresh local front
        for text, (data, hit) in _answers(second.url).items():
            assert hit is None and data == truth[text], text
        for text, (data, hit) in _answers(second.url).items():
            assert hit == "exact" and data == truth[text]
        assert all(bytes(client.get(k)) != good for k in (keys[0], keys[2]))  # type: ignore[arg-type]
    finally:
        own.terminate()
        own.wait(10)
