"""The response caches under load, side by side in one run: SmolLM2-135M chat behind `infopt serve` with the
caches off (`--no-cache`) and on (exact + prompt + semantic), the same `infopt loadtest` workload of new prompts,
repeats and paraphrases (the bundled paraphrase pairs) against each.

    .venv/bin/python benchmarks/cache_loadtest.py                             # 200 requests, 0.3 + 0.3, 4 clients
    .venv/bin/python benchmarks/cache_loadtest.py --requests 40               # a quick check

Each server is a fresh subprocess on a free loopback port with the in-memory cache backend (so nothing from an
earlier run is a hit) and the semantic tier's defaults (5% of its hits shadow-checked on the model). Load comes
from this process (closed loop, streaming, temperature 0: the caches answer only deterministic requests).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from _machine import cpu_name, free_port  # benchmarks/ is on sys.path when run as a script

from infopt.serve import LoadtestConfig, LoadtestResult, run_loadtest

TIERS = ("exact", "prompt", "semantic")


@contextlib.contextmanager
def server(caches: bool) -> Iterator[str]:
    port = free_port()
    flags = ["--semantic-cache", "--cache-backend", "memory"] if caches else ["--no-cache"]
    cmd = [str(Path(sys.executable).parent / "infopt"), "serve", "lm=smollm2-135m", "--port", str(port), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"infopt serve exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError("infopt serve did not become ready")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def run(caches: bool, args: argparse.Namespace) -> LoadtestResult:
    with server(caches) as url:
        for i in range(3):  # warm-up, prompts unlike the workload's
            httpx.post(url + "/v1/chat/completions", timeout=120, json={
                "model": "lm", "messages": [{"role": "user", "content": f"Warm-up number {i}: count to three."}],
                "max_tokens": args.max_tokens, "temperature": 0.0}).raise_for_status()
        config = LoadtestConfig(url, model="lm", endpoint="chat", concurrency=args.concurrency,
                                requests=args.requests, duration_s=args.duration, repeat_share=args.repeat_share,
                                paraphrase_share=args.paraphrase_share, max_tokens=args.max_tokens, temperature=0.0,
                                timeout_s=args.timeout_s, seed=args.seed)
        output = None if args.output is None else Path(args.output) / ("on" if caches else "off")
        return run_loadtest(config, output=output, overwrite=True)


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ratio(on: Any, off: Any) -> str:
    return f"{on / off:.2f}x" if isinstance(on, int | float) and isinstance(off, int | float) and off else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--repeat-share", type=float, default=0.3)
    ap.add_argument("--paraphrase-share", type=float, default=0.3)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--duration", type=float, default=3600.0, help="seconds per run at most (default 3600)")
    ap.add_argument("--timeout-s", type=float, default=600.0, help="per-request timeout (default 600)")
    ap.add_argument("--output", metavar="DIR", help="also write off/ and on/ loadtest.json here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}; SmolLM2-135M chat, {args.requests} requests, repeat_share {args.repeat_share}, "
          f"paraphrase_share {args.paraphrase_share}, {args.concurrency} clients, max_tokens {args.max_tokens}")
    off, on = run(False, args), run(True, args)
    print(f"texts sent (same plan both runs): {on.workload}; errors off {off.errors or 'none'}, "
          f"on {on.errors or 'none'}")
    rows: list[tuple[str, Any, Any, str]] = [("requests ok", off.ok, on.ok, "d"),
                                             ("elapsed s", off.elapsed_s, on.elapsed_s, ".1f"),
                                             ("requests / s", off.requests_per_s, on.requests_per_s, ".2f")]
    for key in ("mean", "p50", "p95", "p99"):
        rows.append((f"latency {key} ms", (off.latency_ms or {}).get(key), (on.latency_ms or {}).get(key), ".1f"))
    rows.append(("time to first token p50 ms", (off.ttft_ms or {}).get("p50"), (on.ttft_ms or {}).get("p50"), ".1f"))
    rows.append(("model calls (misses)", off.cache["model_calls"], on.cache["model_calls"], "d"))
    rows.append(("hit rate, all tiers", off.cache["hit_rate"], on.cache["hit_rate"], ".1%"))
    for tier in TIERS:
        rows.append((f"hit rate, {tier}", off.cache["tiers"][tier]["rate"], on.cache["tiers"][tier]["rate"], ".1%"))
    for tier in (*TIERS, "miss"):
        ms_off, ms_on = off.cache["tiers"][tier]["latency_ms"], on.cache["tiers"][tier]["latency_ms"]
        for key in ("mean", "p50", "p95"):
            rows.append((f"{tier} latency {key} ms", (ms_off or {}).get(key), (ms_on or {}).get(key), ".1f"))
    print("\n| metric | caches off | caches on | on / off |")
    print("|---|---|---|---|")
    for name, a, b, fmt in rows:
        ratio = "-" if name.startswith("hit rate") else _ratio(b, a)
        print(f"| {name} | {_num(a, fmt)} | {_num(b, fmt)} | {ratio} |")


if __name__ == "__main__":
    main()
