"""Replicas on Ray Serve against the single-process server, side by side in one run: the same model, the same
closed-loop load (caches off, so every request reaches a model), `infopt serve` alone, then `--replicas 1` and
`--replicas 2` on a local Ray cluster; then two replicas sharing a Redis cache (a repeat answered by the other one).

    .venv/bin/python benchmarks/serve_replicas.py                     # minilm-l6-rt, 32 clients, 600 requests
    .venv/bin/python benchmarks/serve_replicas.py --model DIR --clients 16 --requests 400

Needs ray[serve] (pip install -e ".[ray]") and redis-server. Load comes from this process over loopback, so on a
small machine the client, Ray's proxy and the replicas share the cores: say so beside the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from _machine import cpu_name, free_port, wait_ready  # benchmarks/ is on sys.path when run as a script
from serve_batching import load

from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.serve import REPLICA_HEADER


@contextlib.contextmanager
def server(model: str, replicas: int, log: Path, extra: tuple[str, ...] = ()) -> Iterator[str]:
    """`infopt serve m=MODEL` (with `--replicas N` when N > 0) on a free port, ready (every replica)."""
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "infopt"), "serve", f"m={model}", "--port", str(port), "--max-queue",
           "256", *extra, *(["--replicas", str(replicas)] if replicas else [])]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if replicas:  # every replica, not only the first: run_on_ray prints "N of N ready"
            deadline = time.time() + 300
            while f"{replicas} of {replicas} ready" not in log.read_text():
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the replicas did not become ready: {log.read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            wait_ready(url, 300, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def shared_hit(url: str) -> str:
    """Send one new text, then repeats until another replica answers one: whether that was a cache hit."""
    with httpx.Client(timeout=30) as c:
        body = {"model": "m", "input": [f"a shared-cache probe {time.time()}"]}
        first = c.post(url + "/v1/classify", json=body)
        for _ in range(100):
            r = c.post(url + "/v1/classify", json=body)
            if r.headers.get(REPLICA_HEADER) != first.headers.get(REPLICA_HEADER):
                return (f"first answer by {first.headers.get(REPLICA_HEADER)} "
                        f"(cache: {first.headers.get('x-infopt-cache', 'miss')}); the repeat answered by "
                        f"{r.headers.get(REPLICA_HEADER)} (cache: {r.headers.get('x-infopt-cache', 'miss')})")
    return "the other replica never answered"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="minilm-l6-rt")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--redis-url", default=None, help="a Redis for the shared-cache check (default: start one)")
    args = ap.parse_args()
    texts = split_dataset(load_dataset(DataConfig("rotten-tomatoes"))).test.texts
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    print(f"machine: {cpu_name()}; model {args.model}; {args.clients} clients, up to {args.requests} requests or "
          f"{args.duration:g} s; caches off; client, proxy and replicas share this machine's cores", flush=True)
    rows = []
    for name, replicas in (("infopt serve (one process)", 0), ("Ray Serve, 1 replica", 1),
                           ("Ray Serve, 2 replicas", 2)):
        with server(args.model, replicas, logs / f"replicas-{replicas}.log", ("--no-cache",)) as url:
            load(url, texts[:64], 4, 64, 20)  # warm-up
            rows.append((name, load(url, texts, args.clients, args.requests, args.duration)))
        print(f"{name}: {rows[-1][1]}", flush=True)
    base = rows[0][1]["items_per_s"]
    print("\n| server | items/s | vs one process | p50 ms | p95 ms | errors |\n|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['items_per_s']:.1f} | {r['items_per_s'] / base:.2f}x | {r['p50']:.1f} | "
              f"{r['p95']:.1f} | {r['errors']:.0f} |")
    redis = None
    url_redis = args.redis_url
    if url_redis is None:
        rport = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no"], stdout=subprocess.DEVNULL)
        url_redis = f"redis://127.0.0.1:{rport}/0"
    try:
        with server(args.model, 2, logs / "replicas-redis.log", ("--redis-url", url_redis)) as url:
            print(f"\nshared cache (2 replicas, Redis {url_redis}): {shared_hit(url)}")
    finally:
        if redis is not None:
            redis.terminate()


if __name__ == "__main__":
    main()
