"""Soak: one `infopt serve` with a classifier and a chat model (caches on, a small in-memory cache so its bound is
reached), fixed-rate load of both for a bounded time, in back-to-back windows; per window p50 / p95, error rate,
the server's RSS and the cache's bytes; the trend of each over the run, and a plot.

    .venv/bin/python benchmarks/soak.py                                # 10 minutes, windows of 30 s
    .venv/bin/python benchmarks/soak.py --minutes 3 --output soak-out  # writes soak.json and soak.png there

Load: classify at --clf-rate requests/s (Poisson, 30% repeats: cache hits) and chat completions of SmolLM2 at
--chat-rate requests/s (16 tokens, 30% repeats), from this process over loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from _machine import cpu_name, free_port, wait_ready  # benchmarks/ is on sys.path when run as a script

from infopt.serve import LoadtestConfig, loadtest_async

CACHE_BYTES = 2 * 2**20


def _metric(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}{{[^}}]*}} ([0-9.e+-]+)$", text, re.M))


async def window(url: str, seconds: float, clf_rate: float, chat_rate: float, seed: int) -> dict[str, Any]:
    clf = LoadtestConfig(url, "clf", rate=clf_rate, duration_s=seconds, requests=int(clf_rate * seconds * 2),
                         repeat_share=0.3, seed=seed)
    chat = LoadtestConfig(url, "lm", endpoint="chat", rate=chat_rate, duration_s=seconds,
                          requests=max(1, int(chat_rate * seconds * 2)), repeat_share=0.3, max_tokens=16,
                          temperature=0.0, seed=seed, timeout_s=60)
    a, b = await asyncio.gather(loadtest_async(clf), loadtest_async(chat))
    out = {}
    for name, r in (("classify", a), ("chat", b)):
        lat = r.latency_ms or {}
        out[name] = {"sent": r.sent, "ok": r.ok, "error_rate": 1 - r.ok / max(1, r.sent),
                     "p50_ms": lat.get("p50", float("nan")), "p95_ms": lat.get("p95", float("nan")),
                     "hit_rate": r.cache.get("hit_rate", 0.0) if r.cache else 0.0}
    return out


def _slope_per_min(xs: list[float], ys: list[float]) -> float:
    return float(np.polyfit(xs, ys, 1)[0]) if len(xs) > 2 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--window-s", type=float, default=30.0)
    ap.add_argument("--clf-rate", type=float, default=20.0)
    ap.add_argument("--chat-rate", type=float, default=0.5)
    ap.add_argument("--output", default="soak-out")
    args = ap.parse_args()
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = out_dir / "serve.toml"
    config.write_text(f'port = {port}\n[models]\nclf = "minilm-l6-rt"\nlm = "smollm2-135m"\n'
                      f'[cache]\nbackend = "memory"\nmax_bytes = {CACHE_BYTES}\n')
    log = (out_dir / "serve.log").open("w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "infopt"), "serve", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    rows: list[dict[str, Any]] = []
    try:
        wait_ready(url, 300, proc)
        server = psutil.Process(proc.pid)
        print(f"machine: {cpu_name()}; soak of {args.minutes:g} min in {args.window_s:g} s windows; classify "
              f"{args.clf_rate:g}/s, chat {args.chat_rate:g}/s (16 tokens); cache in memory, bound "
              f"{CACHE_BYTES:,} bytes", flush=True)
        t0 = time.time()
        i = 0
        while time.time() - t0 < 60 * args.minutes:
            w = asyncio.run(window(url, args.window_s, args.clf_rate, args.chat_rate, seed=i))
            metrics = httpx.get(url + "/metrics", timeout=10).text
            w.update(t_min=(time.time() - t0) / 60, rss_mb=server.memory_info().rss / 2**20,
                     cache_bytes=_metric(metrics, "infopt_cache_bytes"),
                     cache_entries=_metric(metrics, "infopt_cache_entries"))
            rows.append(w)
            print(f"{w['t_min']:5.1f} min  classify p50 {w['classify']['p50_ms']:6.1f} p95 "
                  f"{w['classify']['p95_ms']:6.1f} err {w['classify']['error_rate']:.3f} | chat p50 "
                  f"{w['chat']['p50_ms']:7.0f} p95 {w['chat']['p95_ms']:7.0f} err {w['chat']['error_rate']:.3f} | "
                  f"RSS {w['rss_mb']:6.0f} MB | cache {w['cache_bytes']:,.0f} B", flush=True)
            i += 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    t = [r["t_min"] for r in rows[1:]]  # the first window warms up
    summary = {
        "rss_mb_per_min": _slope_per_min(t, [r["rss_mb"] for r in rows[1:]]),
        "rss_mb_first_last": [rows[1]["rss_mb"], rows[-1]["rss_mb"]] if len(rows) > 1 else [],
        "cache_bytes_max": max(r["cache_bytes"] for r in rows), "cache_bytes_bound": CACHE_BYTES,
        **{f"{e}_p95_ms_per_min": _slope_per_min(t, [r[e]["p95_ms"] for r in rows[1:]]) for e in ("classify", "chat")},
        **{f"{e}_error_rate": sum(r[e]["sent"] - r[e]["ok"] for r in rows) / max(1, sum(r[e]["sent"] for r in rows))
           for e in ("classify", "chat")},
    }
    (out_dir / "soak.json").write_text(json.dumps({"machine": cpu_name(), "rows": rows, "summary": summary}, indent=2))
    print("\nsummary:", json.dumps(summary, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    ts = [r["t_min"] for r in rows]
    for e, ax in (("classify", axes[0]), ("chat", axes[1])):
        ax.plot(ts, [r[e]["p50_ms"] for r in rows], "o-", label="p50")
        ax.plot(ts, [r[e]["p95_ms"] for r in rows], "s-", label="p95")
        ax.set_ylabel(f"{e} latency, ms")
        ax.legend()
    axes[2].plot(ts, [r["rss_mb"] for r in rows], "o-", label="server RSS")
    axes[2].set_ylabel("server RSS, MiB")
    axes[2].set_ylim(0, 1.2 * max(r["rss_mb"] for r in rows))
    axes[2].set_xlabel("minutes")
    cache_ax = axes[2].twinx()
    cache_ax.plot(ts, [r["cache_bytes"] / 2**20 for r in rows], "s-", c="tab:orange", label="cache")
    cache_ax.axhline(CACHE_BYTES / 2**20, ls="--", c="grey", label="cache bound")
    cache_ax.set_ylabel("cache, MiB")
    cache_ax.set_ylim(0, 1.3 * CACHE_BYTES / 2**20)
    axes[2].legend(loc="lower left")
    cache_ax.legend(loc="lower right")
    fig.suptitle(f"infopt serve soak: {cpu_name()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "soak.png", dpi=110)
    print(f"wrote {out_dir / 'soak.json'} and {out_dir / 'soak.png'}")


if __name__ == "__main__":
    main()
