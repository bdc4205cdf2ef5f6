from __future__ import annotations

from pathlib import Path

import pytest

from infopt.errors import UserError
from infopt.serve import BatchingConfig, ModelSpec, ServeConfig, load_serve_config


def test_defaults() -> None:
    c = ServeConfig(models=[ModelSpec("clf", Path("m"))])  # type: ignore[arg-type]
    assert c.models == (ModelSpec("clf", "m"),)
    assert (c.host, c.port, c.max_inputs, c.max_body_bytes, c.price_per_hour) == ("127.0.0.1", 8000, 64, 1_000_000, 0)
    assert c.batching == BatchingConfig(32, 0.0, 64, 30.0)
    assert c.model("clf") is c.models[0] and c.model("x") is None
    assert not c.access_log  # /metrics counts requests; a line per request costs CPU on every cache hit


@pytest.mark.parametrize(("build", "field"), [
    (lambda: BatchingConfig(max_batch_size=0), "max_batch_size"),
    (lambda: BatchingConfig(max_batch_size=True), "max_batch_size"),
    (lambda: BatchingConfig(max_wait_ms=-1), "max_wait_ms"),
    (lambda: BatchingConfig(max_queue=0), "max_queue"),
    (lambda: BatchingConfig(timeout_s=0), "timeout_s"),
    (lambda: BatchingConfig(packing="yes"), "packing"),  # type: ignore[arg-type]
    (lambda: BatchingConfig(workers=0), "workers"),
    (lambda: ModelSpec("", "m"), "name"),
    (lambda: ModelSpec("a", 3), "path"),  # type: ignore[arg-type]
    (lambda: ServeConfig(models=()), "models"),
    (lambda: ServeConfig(models=(ModelSpec("a", "m"),), port=70000), "port"),
    (lambda: ServeConfig(models=(ModelSpec("a", "m"),), host=""), "host"),
    (lambda: ServeConfig(models=(ModelSpec("a", "m"),), max_inputs=0), "max_inputs"),
    (lambda: ServeConfig(models=(ModelSpec("a", "m"),), max_body_bytes=0), "max_body_bytes"),
    (lambda: ServeConfig(models=(ModelSpec("a", "m"),), price_per_hour=-1), "price_per_hour"),
    (lambda: ServeConfig(models=(ModelSpec("a", "m"),), batching={}), "batching"),  # type: ignore[arg-type]
    (lambda: ServeConfig(models=(ModelSpec("a", "m"),), access_log="yes"), "access_log"),  # type: ignore[arg-type]
])
def test_bad_fields(build: object, field: str) -> None:
    with pytest.raises(UserError, match=rf"\.{field} is"):
        build()  # type: ignore[operator]


def test_duplicate_names() -> None:
    with pytest.raises(UserError, match="'a' more than once"):
        ServeConfig(models=(ModelSpec("a", "m"), ModelSpec("a", "n")))


def test_toml(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text('port = 9000\nprice_per_hour = 2.5\naccess_log = true\n[batching]\nmax_batch_size = 8\n'
                    'packing = false\n'
                    '[[models]]\nname = "clf"\npath = "minilm-l6-rt"\n[[models]]\nname = "emb"\npath = "/m/emb"\n')
    c = load_serve_config(path)
    assert c.port == 9000 and c.price_per_hour == 2.5 and c.batching.max_batch_size == 8 and c.access_log
    assert not c.batching.packing
    assert [m.name for m in c.models] == ["clf", "emb"]
    path.write_text('[models]\nclf = "minilm-l6-rt"\n')
    assert load_serve_config(path).models == (ModelSpec("clf", "minilm-l6-rt"),)


@pytest.mark.parametrize(("text", "match"), [
    ('prot = 1\n[models]\na = "m"\n', "unknown key 'prot' in the top level"),
    ('[batching]\nmax_batch = 1\n[models]\na = "m"\n', r"unknown key 'max_batch' in \[batching\]"),
    ('[[models]]\nname = "a"\npth = "m"\n', r"unknown key 'pth' in \[\[models\]\] #1"),
    ('[batching]\nmax_queue = 0\n[models]\na = "m"\n', r"\[batching\]: BatchingConfig.max_queue is 0"),
    ('port = "80"\n[models]\na = "m"\n', "ServeConfig.port is '80'"),
    ('models = 3\n', "key 'models' is 3"),
    ('port = 1\n', "names no models"),
    ('port = = 1\n', "not valid TOML"),
])
def test_toml_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=match):
        load_serve_config(path)


def test_toml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Cannot read the server config"):
        load_serve_config(tmp_path / "nope.toml")


def test_cache_section_and_flags(tmp_path: Path) -> None:
    from infopt.serve import ServeCacheConfig, serve_config, toml_reference

    assert ServeConfig(models=(ModelSpec("a", "b"),)).cache == ServeCacheConfig()
    assert ServeConfig(models=(ModelSpec("a", "b"),)).cache.admin_on("127.0.0.1")
    assert not ServeConfig(models=(ModelSpec("a", "b"),), host="0.0.0.0").cache.admin_on("0.0.0.0")
    path = tmp_path / "serve.toml"
    path.write_text('[models]\nclf = "x"\n[cache]\nbackend = "memory"\nprompt = false\nadmin = true\n')
    cache = load_serve_config(path).cache
    assert (cache.backend, cache.exact, cache.prompt, cache.admin) == ("memory", True, False, True)
    path.write_text('[models]\nclf = "x"\n[cache]\nbackend = "disk"\n')
    with pytest.raises(UserError, match=r"\[cache\]"):
        load_serve_config(path)
    assert serve_config(["clf=x"], None, redis_url="redis://h:1/0").cache.backend == "redis"
    assert serve_config(["clf=x"], None, cache_backend="memory").cache.backend == "memory"
    assert not serve_config(["clf=x"], None, no_cache=True).cache.enabled
    assert serve_config(["clf=x"], None, access_log=True).access_log
    assert not serve_config(["clf=x"], None, access_log=None).access_log  # the flag not given
    with pytest.raises(UserError, match="--cache-backend"):
        serve_config(["clf=x"], None, cache_backend="disk")
    assert "[cache]" in toml_reference() and "admin (not set)" in toml_reference()


def test_a_model_may_set_its_session_threads(tmp_path: Path) -> None:
    from infopt.optimize._export import serve_toml

    (tmp_path / "model").mkdir()
    text = serve_toml("clf", Path("model"), 32, 2, "a note", latency_threads=1)
    assert "threads = 1" in text
    (tmp_path / "serve.toml").write_text(text)
    spec = load_serve_config(tmp_path / "serve.toml").models[0]
    assert spec.threads == 1 and spec.path == str((tmp_path / "model").resolve())
    assert "threads = 1" not in serve_toml("clf", Path("model"), 32, 2, "a note")
    with pytest.raises(UserError, match="threads"):
        ModelSpec("clf", "m", threads=0)
