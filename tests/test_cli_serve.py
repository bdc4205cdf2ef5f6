"""`infopt serve` and `infopt loadtest`: config assembly, errors on one line, and the real console script."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from infopt.cli import main
from infopt.errors import UserError
from infopt.models import MANIFEST_FILE, LoadedModel, Manifest, save_model
from infopt.serve import BatchingConfig, ModelSpec, ServeConfig, model_spec, serve_config, toml_reference
from infopt.serve._launch import banner, check_address

INFOPT = str(Path(sys.executable).parent / "infopt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_error_line(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("infopt: error: ") and "Fix:" in lines[0], err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def model_dir(tmp_path: Path, tiny_bert_classifier: LoadedModel) -> Path:
    save_model(tiny_bert_classifier, tmp_path / "tiny")
    return tmp_path / "tiny"


def test_model_arguments() -> None:
    assert model_spec("minilm-l6-rt") == ModelSpec("minilm-l6-rt", "minilm-l6-rt")
    assert model_spec("runs/student/") == ModelSpec("student", "runs/student/")
    assert model_spec("clf=runs/student") == ModelSpec("clf", "runs/student")
    assert model_spec("runs/a=b") == ModelSpec("a=b", "runs/a=b")  # "=" in a folder name, not NAME=
    with pytest.raises(UserError, match="names no model"):
        model_spec("/")


def test_flags_override_the_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text('port = 9000\nmax_inputs = 4\n[models]\nclf = "a"\nemb = "b"\n[batching]\nmax_wait_ms = 2.0\n')
    assert serve_config([], path) == ServeConfig(models=(ModelSpec("clf", "a"), ModelSpec("emb", "b")), port=9000,
                                                 max_inputs=4, batching=BatchingConfig(max_wait_ms=2.0))
    config = serve_config(["x=c"], path, port=9100, max_batch_size=8, timeout_s=5.0, price_per_hour=2.5,
                          host=None, packing=False)
    assert config.models == (ModelSpec("x", "c"),) and (config.port, config.max_inputs, config.price_per_hour) == (
        9100, 4, 2.5)
    assert config.batching == BatchingConfig(max_batch_size=8, max_wait_ms=2.0, timeout_s=5.0, packing=False)
    with pytest.raises(UserError, match=r"--max-queue 0 is not allowed\. Fix: pass --max-queue an integer"):
        serve_config(["a"], max_queue=0)
    with pytest.raises(UserError, match="no model"):
        serve_config([])
    with pytest.raises(UserError, match="more than once"):
        serve_config(["a", "x/a"])


def test_help_documents_every_toml_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert toml_reference() in out
    for cls in (ServeConfig, ModelSpec, BatchingConfig):
        for f in dataclasses.fields(cls):
            assert f"{f.name} " in out or f"[{f.name}]" in out, f.name  # a key, or a table
    assert "[batching]" in out and "[[models]]" in out and "max_batch_size = 32" in out


def test_bad_configs_fail_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "serve.toml"
    bad.write_text('[models]\nclf = "a"\n[batching]\nmax_batchsize = 3\n')
    assert main(["serve", "--config", str(bad)]) == 2
    _one_error_line(capsys, "max_batchsize", "[batching]", str(bad))
    assert main(["serve", "a", "--port", "70000"]) == 2
    _one_error_line(capsys, "--port 70000")
    assert main(["serve"]) == 2
    _one_error_line(capsys, "no model")
    assert main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2
    _one_error_line(capsys, "missing")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "a", "--port", str(taken.getsockname()[1])]) == 2  # checked before loading
        _one_error_line(capsys, "Cannot listen", "--port")


def test_banner_warns_off_loopback(tiny_bert_classifier: LoadedModel) -> None:
    config = ServeConfig(models=(ModelSpec("clf", "x"),), host="::", port=8080, price_per_hour=2.0)
    text = "\n".join(banner(config, [tiny_bert_classifier]))
    assert text.startswith("infopt serve: http://[::]:8080") and "warning: :: is not loopback" in text
    assert "model clf: classification" in text and "http://[::]:8080/metrics" in text and "2 per hour" in text
    assert "warning" not in "\n".join(banner(dataclasses.replace(config, host="127.0.0.1"), [tiny_bert_classifier]))
    with pytest.raises(UserError, match="not an address of this machine"):
        check_address("no-such-host.invalid", 8000)


def test_loadtest_refuses_other_machines() -> None:
    proc = subprocess.run([INFOPT, "loadtest", "http://192.0.2.7:8000", "--model", "clf", "--requests", "5"],
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "not a loopback address" in lines[0] and "Fix:" in lines[0] and "Traceback" not in proc.stderr


def test_serve_through_the_console_script(model_dir: Path, tmp_path: Path, serve_process: Any,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "serve.log"
    with serve_process([str(model_dir), "--max-wait-ms", "2", "--price-per-hour", "1.5"], log) as url:
        r = httpx.post(url + "/v1/classify", json={"model": "tiny", "input": "a fine film"})
        assert r.status_code == 200 and r.json()["data"][0]["label"] in ("negative", "positive")
        assert httpx.get(url + "/v1/models").json()["data"][0]["packing"]  # the probe ran before that batch
        out = tmp_path / "lt"
        assert main(["loadtest", url, "--model", "tiny", "--requests", "20", "--concurrency", "2", "--duration",
                     "5", "--output", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "requests sent" in printed and "server batch sizes" in printed
        saved = json.loads((out / "loadtest.json").read_text())
        assert (saved["sent"], saved["ok"], saved["errors"]) == (20, 20, {})
    banner = log.read_text()
    fingerprint = Manifest.from_file(model_dir / MANIFEST_FILE).fingerprint
    assert fingerprint and fingerprint in banner, banner
    assert f"infopt serve: {url}" in banner and f"{url}/metrics" in banner
    assert "model tiny: classification" in banner and "waiting up to 2 ms" in banner and "1.5 per hour" in banner


def test_batching_flags() -> None:
    from infopt.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["serve", "m", "--no-packing"]).packing is False and parse(["serve", "m"]).packing is None
    assert serve_config(["m"], batch_workers=2).batching.workers == 2
    with pytest.raises(UserError, match="--batch-workers 0 is not allowed"):
        serve_config(["m"], batch_workers=0)


def test_serve_a_candidate_in_shadow_through_the_console_script(
        model_dir: Path, tmp_path: Path, tokenizer: Any, make_classifier: Any, serve_process: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    candidate = tmp_path / "cand"
    save_model(make_classifier(tokenizer, seed=7, name="cand"), candidate)
    args = [f"clf={model_dir}", "--candidate", str(candidate), "--shadow", "--rollout-db",
            str(tmp_path / "rollout.sqlite")]
    with serve_process(args, tmp_path / "serve.log") as url:
        for text in ("a fine film", "a dull film", "a great cast"):
            r = httpx.post(url + "/v1/classify", json={"model": "clf", "input": text}, timeout=30)
            assert r.status_code == 200 and r.json()["id"], r.text
        capsys.readouterr()
        assert main(["rollout", "status", url]) == 0
        printed = capsys.readouterr().out
        assert "model clf" in printed and "shadow" in printed and "cand" in printed, printed
    assert (tmp_path / "rollout.sqlite").is_file()
