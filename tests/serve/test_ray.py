"""`infopt serve --replicas N` on a real local Ray cluster: two replicas share cache hits through a real Redis, a
replica killed mid-load never yields a wrong answer, SIGTERM stops everything; and the [ray] table itself."""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from infopt.errors import UserError
from infopt.models import load_model
from infopt.serve import REPLICA_HEADER, ModelSpec, RayConfig, ServeConfig, create_app, load_serve_config, serve_config

schema = schemathesis.openapi.from_dict(create_app(ServeConfig(models=(ModelSpec("clf", "x"),))).openapi())


def test_the_ray_table_and_flags(tmp_path: Path) -> None:
    assert not RayConfig().enabled and RayConfig(replicas=2).enabled and RayConfig(min_replicas=1,
                                                                                   max_replicas=3).enabled
    assert RayConfig(replicas=2).deployment_options() == {
        "num_replicas": 2, "max_ongoing_requests": 64, "ray_actor_options": {"num_cpus": 1.0}}
    auto = RayConfig(min_replicas=1, max_replicas=4, target_ongoing_requests=4).deployment_options()
    assert auto["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4}
    assert RayConfig(replicas=2).threads_per_replica(2) == 1 and RayConfig(replicas=3).threads_per_replica(2) == 1
    assert RayConfig(replicas=1, threads=3).threads_per_replica(2) == 3
    for bad in ({"replicas": -1}, {"max_replicas": 3}, {"min_replicas": 4, "max_replicas": 2}, {"address": ""}):
        with pytest.raises(UserError):
            RayConfig(**bad)  # type: ignore[arg-type]
    (tmp_path / "s.toml").write_text('[models]\nclf = "minilm-l6-rt"\n[ray]\nreplicas = 2\nnum_cpus = 0.5\n')
    assert load_serve_config(tmp_path / "s.toml").ray == RayConfig(replicas=2, num_cpus=0.5)
    (tmp_path / "bad.toml").write_text('[models]\nclf = "minilm-l6-rt"\n[ray]\nreplica = 2\n')
    with pytest.raises(UserError, match="replica"):
        load_serve_config(tmp_path / "bad.toml")
    flags = serve_config(["minilm-l6-rt"], None, replicas=3, ray_address="auto")
    assert flags.ray.replicas == 3 and flags.ray.address == "auto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.fixture(scope="module")
def ray_server(model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    pytest.importorskip("ray.serve")
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary")
    tmp = tmp_path_factory.mktemp("ray")
    rport, port = _free_port(), _free_port()
    redis_proc = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp / "serve.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "INFOPT_CACHE": str(tmp / "cache"), "RAYTEST_KEY": KEY}
    infopt = str(Path(sys.executable).parent / "infopt")
    with log.open("w") as out:
        cmd = [infopt, "serve", f"clf={model_dirs['clf']}", "--replicas", "2", "--port", str(port), "--redis-url",
               f"redis://127.0.0.1:{rport}/0", "--api-key-env", "RAYTEST_KEY"]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _until(lambda: "2 of 2 ready" in log.read_text() or proc.poll() is not None, 240, "Ray did not start")
        assert proc.poll() is None, log.read_text()
        yield f"http://127.0.0.1:{port}", log
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, log.read_text()
        assert "stopping the replicas" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        redis_proc.terminate()
        redis_proc.wait(10)


KEY = "replicas-test-key"


def _classify(client: httpx.Client, url: str, text: str, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(url + "/v1/classify", json={"model": "clf", "input": [text]}, headers=headers)


@pytest.mark.slow
def test_two_replicas_share_cache_hits_through_redis(ray_server: tuple[str, Path],
                                                     model_dirs: dict[str, Path]) -> None:
    url, _ = ray_server
    clf = load_model(model_dirs["clf"])
    with httpx.Client(timeout=30) as client:
        assert _classify(client, url, "a tender, funny film", key=None).status_code == 401  # the key reached Ray
        first = _classify(client, url, "a tender, funny film")
        assert first.status_code == 200 and "x-infopt-cache" not in first.headers, first.text
        label = clf.manifest.labels[int(clf.predict(["a tender, funny film"]).argmax(-1)[0])]
        assert first.json()["data"][0]["label"] == label
        by = {first.headers[REPLICA_HEADER]}
        other = None
        for _ in range(60):  # Ray picks the replica: ask until the other one answers
            r = _classify(client, url, "a tender, funny film")
            assert r.status_code == 200 and r.headers.get("x-infopt-cache") == "exact", r.headers
            assert r.json()["data"] == first.json()["data"]
            if r.headers[REPLICA_HEADER] not in by:
                other = r
                break
        assert other is not None, "the second replica never answered"
        by.add(other.headers[REPLICA_HEADER])
        assert len({tag.split(":")[1] for tag in by}) == 2  # two processes


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_to_the_ray_deployment_gets_a_server_error(case: Any, ray_server: tuple[str, Path]) -> None:
    """The same bounded schema fuzzing as the single server's, through Ray's proxy and a replica (with a key)."""
    case.call_and_validate(base_url=ray_server[0], headers={"Authorization": f"Bearer {KEY}"},
                           checks=[not_a_server_error], timeout=30)


@pytest.mark.slow
def test_a_replica_killed_mid_load_gives_no_wrong_answer(ray_server: tuple[str, Path],
                                                         model_dirs: dict[str, Path]) -> None:
    url, _ = ray_server
    clf = load_model(model_dirs["clf"])
    texts = [f"review number {i}: {'great' if i % 2 else 'dull'} and {'moving' if i % 3 else 'flat'}"
             for i in range(300)]
    right = [clf.manifest.labels[i] for i in clf.predict(texts).argmax(-1).tolist()]
    with httpx.Client(timeout=30) as client:
        victim = int(_classify(client, url, "warm up").headers[REPLICA_HEADER].split(":")[1])

        def one(i: int) -> tuple[int, int, str | None]:
            try:
                r = _classify(client, url, texts[i])
            except httpx.HTTPError:
                return i, 0, None  # the connection failed: a clean failure, no answer
            label = r.json()["data"][0]["label"] if r.status_code == 200 else None
            return i, r.status_code, label

        with cf.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(one, i) for i in range(len(texts))]
            while sum(f.done() for f in futures) < 40:  # mid-load: some answered, most still to come
                time.sleep(0.005)
            os.kill(victim, signal.SIGKILL)
            after = sum(not f.done() for f in futures)
            results = [f.result() for f in futures]
    answered = [(i, label) for i, status, label in results if status == 200]
    print(f"replica killed mid-load ({after} requests not done yet): {len(answered)} of {len(texts)} answered, "
          f"statuses {sorted({status for _, status, _ in results})}")
    assert after > 100
    assert all(label == right[i] for i, label in answered), "a wrong answer after the kill"
    assert len(answered) >= len(texts) // 2, results  # the other replica kept serving
    failed = [status for _, status, _ in results if status != 200]
    assert all(s == 0 or s >= 500 for s in failed), failed  # failures are clean server-side errors, never a 4xx
    with httpx.Client(timeout=30) as client:  # Ray starts a new replica process in place of the killed one
        pids: set[int] = set()

        def replaced() -> bool:
            r = _classify(client, url, "after the kill")
            if r.status_code == 200:
                pids.add(int(r.headers[REPLICA_HEADER].split(":")[1]))
            return len(pids - {victim}) == 2

        _until(replaced, 120, "Ray did not replace the killed replica")  # two live processes, neither the victim
