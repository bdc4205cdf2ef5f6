"""run_server in a real process (SIGTERM drains and exits 0), and the official openai client."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from infopt.errors import UserError
from infopt.serve import ModelSpec, ServeConfig, run_server

from .conftest import wait_for_ready  # type: ignore[import-not-found]


def test_openai_client_embeddings(server: Any) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    out = client.embeddings.create(model="emb", input=["hello world", "bye"])
    assert len(out.data) == 2 and len(out.data[0].embedding) == 32
    assert out.usage.prompt_tokens == out.usage.total_tokens == 7
    floats = client.embeddings.create(model="emb", input="hello world", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(out.data[0].embedding, abs=1e-5)
    with pytest.raises(openai.BadRequestError, match="not served here"):
        client.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(model="clf", input="x")
    assert {m.id for m in client.models.list()} == {"clf", "emb"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_drains_and_exits(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "serve.toml"
    config.write_text(f'port = {port}\n[models]\nclf = "{model_dirs["clf"]}"\n'
                      f'[cache]\npath = "{tmp_path / "cache.sqlite"}"\n')  # not the real infopt cache
    code = ("import sys; from infopt.serve import load_serve_config, run_server; "
            "run_server(load_serve_config(sys.argv[1]), log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code, str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ready(proc, url)
        r = httpx.post(url + "/v1/classify", json={"model": "clf", "input": "fine"})
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.communicate()[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_server_raises_the_load_error(tmp_path: Path) -> None:
    config = ServeConfig(models=(ModelSpec("clf", str(tmp_path / "missing")),), port=0)
    with pytest.raises(UserError, match="neither a bundled model nor an existing folder"):
        run_server(config, log_level="warning")


def test_sigterm_under_load_answers_everything_it_accepted(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Requests running or queued when SIGTERM arrives are all answered; a request after it is refused."""
    import asyncio

    port = _free_port()
    config = tmp_path / "serve.toml"
    config.write_text(f'port = {port}\n[batching]\nmax_batch_size = 8\nmax_wait_ms = 3000\nmax_queue = 256\n'
                      f'[models]\nclf = "{model_dirs["clf"]}"\n[cache]\nexact = false\nprompt = false\n')
    code = ("import sys; from infopt.serve import load_serve_config, run_server; "
            "run_server(load_serve_config(sys.argv[1]), log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code, str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    async def burst() -> tuple[list[int], int | str]:
        async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
            tasks = [asyncio.create_task(client.post("/v1/classify", json={"model": "clf", "input": [f"text {i}"]}))
                     for i in range(20)]  # 2 full batches of 8 run; 4 requests wait up to 3 s for more
            while "infopt_queue_depth" not in (m := (await client.get("/metrics")).text) or not any(
                    line.startswith("infopt_queue_depth") and not line.endswith(" 0.0")
                    for line in m.splitlines()):
                await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*tasks)
            assert all(len(r.json()["data"]) == 1 for r in answers if r.status_code == 200)
            try:
                late: int | str = (await client.post("/v1/classify", json={"model": "clf", "input": "x"})).status_code
            except httpx.TransportError as e:
                late = type(e).__name__
            return [r.status_code for r in answers], late

    try:
        wait_for_ready(proc, url)
        codes, late = asyncio.run(burst())
        assert proc.wait(30) == 0, proc.communicate()[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert codes == [200] * 20, codes
    assert late in (503, "ConnectError", "RemoteProtocolError", "ReadError"), late


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_the_readme_curl_command_works_without_a_content_type(server: Any) -> None:
    """`curl -d '{...}'` sends application/x-www-form-urlencoded: a JSON object body is still read as JSON."""
    body = '{"model": "clf", "input": ["a tender, funny film"]}'
    out = subprocess.run(["curl", "-s", "-w", "\\n%{http_code}", server.url + "/v1/classify", "-d", body],
                         capture_output=True, text=True, timeout=30)
    text, status = out.stdout.rsplit("\n", 1)
    assert status == "200", text
    assert json.loads(text)["data"][0]["label"]
    form = httpx.post(server.url + "/v1/classify", data={"model": "clf", "input": "x"})  # a real form stays a 4xx
    assert form.status_code in (400, 422), form.text
