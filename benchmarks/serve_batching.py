"""Dynamic batching in `infopt serve`, side by side in one run: the model's in-process ceilings (sorted padded
batches, and packed batches for a model that packs), our server with and without batching (and, for a model that
packs, padded with --no-packing; for an ONNX Runtime model, 1 and 2 batch workers), and Ray Serve's `@serve.batch`
on the same model and load; then one client (batching on / off, HTTP overhead over in-process, in alternating
rounds) and an overload of 256 clients against a queue of 64.

    .venv/bin/python benchmarks/serve_batching.py                 # the fp32 teacher and its onnx-int8 variant
    .venv/bin/python benchmarks/serve_batching.py --skip-ray      # without the peer (pip install "ray[serve]")

Every server is a separate process on this machine, load comes from this process over loopback (so client and
server share the 2 cores, as they would for any server measured here), from a raw HTTP/1.1 keep-alive client
(`_machine.raw_post`, about 0.1 ms of CPU a request); the batching run is repeated under `infopt loadtest` (httpx,
about 1.8 ms a request) to show what a heavier client takes from the server. Texts: the Rotten Tomatoes test split.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
from _machine import (  # benchmarks/ is on sys.path when run as a script
    Conn,
    connect,
    cpu_name,
    free_port,
    raw_post,
    server_timing_ms,
    wait_ready,
)
from batching_rules import batcher, ceiling, token_lengths  # benchmarks/ is on sys.path when run as a script

from infopt.compress.quantize import quantize
from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.models import LoadedModel, load_model, save_model
from infopt.serve import BatchingConfig, LoadtestConfig, run_loadtest
from infopt.serve._launch import freeze_startup
from infopt.serve._loadreport import batch_histogram, parse_histogram
from infopt.serve._served import batch_workers, threads_shared

CAPS = (4, 8, 16, 32)
"""The `max_batch_size` values tried."""


def chosen_batching(model: LoadedModel, texts: list[str], clients: int,
                    packed: bool = False) -> tuple[dict[int, int], dict[tuple[int, int], float]]:
    """The `max_batch_size` to serve with for each `workers` count tried (1, and 2 of half the threads each for an
    ONNX Runtime model): the best items/s of the real `Batcher` in-process, `clients` closed-loop clients, over
    caps 4 to 32 (a padded queue is grouped by length, so the best cap is not the ceiling's batch size); `packed`:
    batches packed, as the server runs a model that packs. In-process clients do not load the cores the way HTTP
    does, so which `workers` count serves best is measured over HTTP (see `main`)."""
    lengths = token_lengths(model, texts)
    rates, best = {}, {}
    for workers in (1, 2) if batch_workers(model, BatchingConfig(workers=2)) > 1 else (1,):
        run = threads_shared(model, workers)
        for cap in CAPS:
            rates[cap, workers] = asyncio.run(batcher(run, texts, lengths, cap, clients, 800, packed, workers))
        best[workers] = max(CAPS, key=lambda c: rates[c, workers])
    return best, rates


@contextlib.contextmanager
def infopt_server(path: Path, batch: int, queue: int = 256, packing: bool = True,
                  workers: int = 1) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "infopt"), "serve", f"m={path}", "--port", str(port),
           "--max-batch-size", str(batch), "--max-queue", str(queue), "--no-cache",  # batching, not caching
           "--batch-workers", str(workers), *([] if packing else ["--no-packing"])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 120, proc)
        yield url, psutil.Process(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def load(url: str, texts: list[str], clients: int, requests: int, duration: float) -> dict[str, float]:
    r = run_loadtest(LoadtestConfig(url, model="m", concurrency=clients, requests=requests, duration_s=duration),
                     texts=texts)
    lat = r.latency_ms or {}
    return {"items_per_s": r.items_per_s, "p50": lat.get("p50", float("nan")), "p95": lat.get("p95", float("nan")),
            "errors": sum(r.errors.values()),
            "mean_batch": (r.batch_size.mean if r.batch_size else None) or float("nan")}


RAY_APP = '''
import sys, torch
from ray import serve
from starlette.requests import Request
from infopt.models import load_model

@serve.deployment(max_ongoing_requests=256)
class Classifier:
    def __init__(self, path: str) -> None:
        torch.set_num_threads(2)
        self.model = load_model(path)
        self.labels = self.model.manifest.labels

    @serve.batch(max_batch_size=int(sys.argv[2]), batch_wait_timeout_s=float(sys.argv[3]))
    async def classify(self, texts: list[str]) -> list[dict]:
        probs = torch.softmax(self.model.predict(texts).float(), -1)
        return [{"label": self.labels[int(p.argmax())], "probs": p.tolist()} for p in probs]

    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return {"data": [await self.classify(t) for t in texts]}

serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[4])})
serve.run(Classifier.bind(sys.argv[1]), route_prefix="/v1/classify")
print("READY", flush=True)
import time
while True:
    time.sleep(3600)
'''


@contextlib.contextmanager
def ray_server(path: Path, batch: int, wait_s: float) -> Iterator[str]:
    port = free_port()
    script = Path(tempfile.mkdtemp()) / "ray_app.py"
    script.write_text(RAY_APP)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(batch), str(wait_s), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("READY"):
                break
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)


async def _post(conn: Conn, text: str) -> tuple[float, int, dict[bytes, bytes]]:
    """One classify request of one text: (ms, status, lower-cased headers)."""
    return await raw_post(conn, "/v1/classify", {"model": "m", "input": [text]})


async def _closed(url: str, texts: list[str], clients: int, requests: int, duration: float) -> dict[str, float]:
    """`clients` connections, each sending its next request when the last is answered (raw client)."""
    conns = await connect(url, clients)
    todo = iter(range(requests))
    lat: list[float] = []
    errors = 0
    start = time.perf_counter()

    async def worker(conn: Conn) -> None:
        nonlocal errors
        for i in todo:
            if time.perf_counter() - start > duration:
                return
            ms, code, _ = await _post(conn, texts[i % len(texts)])
            lat.append(ms)
            errors += code != 200
            if conn[0].at_eof():  # the server closed it: carry on with a new one
                conn[1].close()
                conn = (await connect(url, 1))[0]

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    for _, writer in conns:
        writer.close()
    return {"items_per_s": (len(lat) - errors) / elapsed, "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)), "errors": errors}


def one_client(urls: list[str], texts: list[str], model: LoadedModel, rounds: int = 6,
               per_round: int = 40) -> list[dict[str, float]]:
    """One client's p50 ms against each server and the servers' own p50 (their Server-Timing header), then
    `model.predict` of the same texts in this process, in alternating rounds (so drift on this VM, which moved one
    text's time by 40% within seconds, hits them alike); the last dict is in-process."""
    async def run() -> list[dict[str, list[float]]]:
        conns = [(await connect(url, 1))[0] for url in urls]
        out: list[dict[str, list[float]]] = [{"client": [], "server": []} for _ in [*urls, model]]
        for r in range(rounds):
            chunk = [texts[(r * per_round + i) % len(texts)] for i in range(per_round)]
            for conn, got in zip(conns, out, strict=False):
                for text in chunk:
                    ms, status, headers = await _post(conn, text)
                    if status == 200:
                        got["client"].append(ms)
                        got["server"].append(server_timing_ms(headers))
            for text in chunk:
                t0 = time.perf_counter()
                model.predict([text])
                out[-1]["client"].append((time.perf_counter() - t0) * 1e3)
                out[-1]["server"].append(out[-1]["client"][-1])
        for _, writer in conns:
            writer.close()
        return out

    return [{"p50": float(np.median(o["client"])), "server_p50": float(np.median(o["server"]))}
            for o in asyncio.run(run())]


def load_raw(url: str, texts: list[str], clients: int, requests: int, duration: float) -> dict[str, float]:
    """`_closed`, with the server's mean batch size from its /metrics (infopt only: NaN for Ray)."""
    def batches() -> dict[str, float]:
        try:
            return parse_histogram(httpx.get(url + "/metrics", timeout=10).text, "infopt_batch_size", {"model": "m"})
        except (httpx.HTTPError, ValueError):
            return {}
    before = batches()
    out = asyncio.run(_closed(url, texts, clients, requests, duration))
    after = batches()
    hist = batch_histogram(before, after) if after else None
    return {**out, "mean_batch": (hist.mean if hist else None) or float("nan")}


async def _overload(url: str, texts: list[str], clients: int,
                    rounds: int) -> list[tuple[float, int, dict[bytes, bytes]]]:
    """`clients` keep-alive connections; each round every one sends a request at once: (ms, status, headers)."""
    conns = await connect(url, clients)
    out: list[tuple[float, int, dict[bytes, bytes]]] = []
    for k in range(rounds):
        out += await asyncio.gather(*(_post(c, texts[(k * clients + i) % len(texts)]) for i, c in enumerate(conns)))
    for _, writer in conns:
        writer.close()
    return out


def overload(path: Path, texts: list[str]) -> dict[str, object]:
    """256 concurrent clients against a queue of 64: how fast the excess is refused, memory, and recovery."""
    with infopt_server(path, batch=32, queue=64) as (url, proc):
        load_raw(url, texts, 4, 100, 5)  # warm
        rss0 = proc.memory_info().rss / 1e6
        rss = []
        lat_429: list[float] = []
        own_429: list[float] = []  # the server's own time of each 429 (Server-Timing)
        codes_all: list[int] = []
        for _ in range(4):
            for ms, code, headers in asyncio.run(_overload(url, texts, 256, 2)):
                codes_all.append(code)
                if code == 429:
                    lat_429.append(ms)
                    own_429.append(server_timing_ms(headers))
            rss.append(proc.memory_info().rss / 1e6)
        after = load_raw(url, texts, 4, 200, 10)
    return {"sent": len(codes_all), "ok": codes_all.count(200), "429": codes_all.count(429),
            "other": len(codes_all) - codes_all.count(200) - codes_all.count(429),
            "p99_429_ms": float(np.percentile(lat_429, 99)) if lat_429 else float("nan"),
            "p50_429_ms": float(np.median(lat_429)) if lat_429 else float("nan"),
            "p99_429_server_ms": float(np.percentile(own_429, 99)) if own_429 else float("nan"),
            "rss_mb": [round(rss0, 1), *(round(r, 1) for r in rss)], "after": after}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=1280, help="requests per throughput run")
    parser.add_argument("--duration", type=float, default=25.0, help="seconds per throughput run at most")
    parser.add_argument("--variant", help="the int8 variant folder (default: onnx-int8 of the teacher, built now)")
    parser.add_argument("--ray-wait-s", type=float, default=0.01, help="Ray's batch_wait_timeout_s")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; torch threads 2")
    texts = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0).test.texts
    teacher = load_model("minilm-l6-rt")
    work = Path(tempfile.mkdtemp(prefix="infopt-serve-bench-"))
    save_model(teacher, work / "fp32")
    int8_path = Path(args.variant) if args.variant else work / "int8"
    if not args.variant:
        save_model(quantize(teacher, "onnx-int8"), int8_path)
    rows = []
    for label, path in (("fp32 teacher", work / "fp32"), ("onnx-int8", int8_path)):
        model = load_model(path)
        packs = model.packs
        row: dict = {"label": label, "packs": packs}
        row["padded_ceiling"], best_bs, per_size = ceiling(model, texts)
        print(f"\n{label}: in-process items/s by batch size (sorted, padded) " +
              ", ".join(f"{k}: {v:.0f}" for k, v in per_size.items()) +
              f" -> ceiling {row['padded_ceiling']:.0f} at {best_bs}")
        row["packed_ceiling"] = None
        if packs:
            row["packed_ceiling"], _, per_packed = ceiling(model, texts, packed=True)
            print(f"{label}: in-process items/s by batch size (arrival order, packed) " +
                  ", ".join(f"{k}: {v:.0f}" for k, v in per_packed.items()))
        for kind in ("packed", "padded") if packs else ("padded",):
            row[kind], per = chosen_batching(model, texts, args.clients, kind == "packed")
            print(f"{label}: in-process Batcher ({kind}), {args.clients} clients, items/s by max_batch_size and "
                  "workers " + ", ".join(f"{c}/{w}: {v:.0f}" for (c, w), v in per.items()) +
                  " -> max_batch_size " + ", ".join(f"{c} for {w} workers" for w, c in row[kind].items()))
        freeze_startup()  # this client's own GC sweeps stay out of what it measures
        options = row["packed" if packs else "padded"]
        row["trial"] = {}
        if len(options) > 1:  # one short served run per workers count; the better one is measured again below
            for w, c in options.items():
                with infopt_server(path, c, workers=w) as (url, _):
                    load_raw(url, texts, args.clients, 200, 5)
                    row["trial"][w] = load_raw(url, texts, args.clients, args.requests, args.duration)["items_per_s"]
            print(f"{label}: served items/s by workers " +
                  ", ".join(f"{w} (max_batch_size {options[w]}): {v:.0f}" for w, v in row["trial"].items()))
        workers = max(row["trial"], key=row["trial"].__getitem__) if row["trial"] else next(iter(options))
        cap = options[workers]
        row["cap"], row["workers"] = cap, workers
        with infopt_server(path, cap, workers=workers) as (url, _), \
                infopt_server(path, 1, workers=workers) as (url_b1, _):
            load_raw(url, texts, args.clients, 200, 5)  # warm-up
            row["ours"] = load_raw(url, texts, args.clients, args.requests, args.duration)
            row["ours_httpx"] = load(url, texts, args.clients, args.requests, args.duration)
            load_raw(url_b1, texts, args.clients, 200, 5)
            row["b1"] = load_raw(url_b1, texts, args.clients, args.requests, args.duration)
            row["one_on"], row["one_off"], here = one_client([url, url_b1], texts, model)
            row["p50_in"] = here["p50"]
        row["served_padded"] = None
        if packs:
            with infopt_server(path, row["padded"][1], packing=False) as (url, _):
                load_raw(url, texts, args.clients, 200, 5)
                row["served_padded"] = load_raw(url, texts, args.clients, args.requests, args.duration)
        row["ray"] = row["ray_one"] = None
        if not args.skip_ray:
            with ray_server(path, best_bs, args.ray_wait_s) as url:
                load_raw(url, texts, args.clients, 200, 10)
                row["ray"] = load_raw(url, texts, args.clients, args.requests, args.duration)
                row["ray_one"] = load_raw(url, texts, 1, 100, 20)
        # this VM's speed drifts within a run: the ceilings are the better of a sweep before and one after serving
        row["padded_ceiling"] = max(row["padded_ceiling"], ceiling(model, texts)[0])
        if packs:
            row["packed_ceiling"] = max(row["packed_ceiling"], ceiling(model, texts, packed=True)[0])
        print(f"{label}: ceilings, the better of the sweeps before and after serving: padded "
              f"{row['padded_ceiling']:.0f}" + (f", packed {row['packed_ceiling']:.0f}" if packs else ""))
        row["ceiling"] = max(row["padded_ceiling"], row["packed_ceiling"] or 0)
        rows.append(row)
    print(f"\n{args.clients} concurrent clients, closed loop, 1 text per request, raw HTTP/1.1 client; items/s. The "
          "ceilings: sorted padded batches (the issue's) and (a model that packs) packed batches in arrival order; "
          "the server packs a model that packs (the padded column: the same server with --no-packing); last column: "
          "the same server under `infopt loadtest`'s httpx client, whose CPU competes with it:")
    print("| model | ceiling: padded / packed | infopt serve (max_batch_size) | share of ceiling: padded / best | "
          "infopt serve, padded (max_batch_size) | infopt serve, max_batch_size=1 | gain of batching | "
          "Ray Serve @serve.batch | infopt / Ray | mean batch (infopt) | batching, httpx client |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ours, ray, padded = r["ours"]["items_per_s"], r["ray"], r["served_padded"]
        packed_c = f"{r['packed_ceiling']:.0f}" if r["packed_ceiling"] else "-"
        cap, workers = r["cap"], r["workers"]
        padded_s = f"{padded['items_per_s']:.0f} ({r['padded'][1]})" if padded else "(the same)"
        ray_s = f"{ray['items_per_s']:.0f} | {ours / ray['items_per_s']:.2f}x" if ray else "- | -"
        how = f"{cap}{', packed' if r['packs'] else ''}{f', {workers} workers' if workers > 1 else ''}"
        share = f"{ours / r['padded_ceiling']:.0%} / {ours / r['ceiling']:.0%}"
        print(f"| {r['label']} | {r['padded_ceiling']:.0f} / {packed_c} | {ours:.0f} ({how}) | {share} | {padded_s} | "
              f"{r['b1']['items_per_s']:.0f} | {ours / r['b1']['items_per_s']:.2f}x | {ray_s} | "
              f"{r['ours']['mean_batch']:.1f} | {r['ours_httpx']['items_per_s']:.0f} |")
    print("\none client, p50 ms:")
    print("| model | in-process | infopt, batching on (in the server) | batching off (in the server) | on - off | "
          "HTTP overhead (on - in-process) | Ray Serve |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        on, off, ray_one = r["one_on"], r["one_off"], r["ray_one"]
        ray_s = f"{ray_one['p50']:.2f}" if ray_one else "-"
        print(f"| {r['label']} | {r['p50_in']:.2f} | {on['p50']:.2f} ({on['server_p50']:.2f}) | {off['p50']:.2f} "
              f"({off['server_p50']:.2f}) | {on['p50'] - off['p50']:+.2f} | {on['p50'] - r['p50_in']:+.2f} | "
              f"{ray_s} |")
    print("\n256 concurrent clients against max_queue=64 (onnx-int8, batch 32), 4 x 2 rounds of 256 requests:")
    o = overload(int8_path, texts)
    print(f"sent {o['sent']}: {o['ok']} ok, {o['429']} refused with 429, {o['other']} other; 429 answered in "
          f"p50 {o['p50_429_ms']:.1f} ms, p99 {o['p99_429_ms']:.1f} ms (the server's own p99 "
          f"{o['p99_429_server_ms']:.2f} ms); server RSS MB over the rounds {o['rss_mb']}; "
          f"afterwards 4 clients: {o['after']['items_per_s']:.0f} items/s, {o['after']['errors']} errors")


if __name__ == "__main__":
    main()
