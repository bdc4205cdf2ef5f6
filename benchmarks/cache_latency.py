"""Cache hit latency at the client over loopback, with 100,000 entries in the semantic index: exact hits, semantic
hits (paraphrases of stored prompts) and misses that run the model, against the targets (exact p95 <= 2 ms,
semantic p95 <= 5 ms).

    .venv/bin/python benchmarks/cache_latency.py                        # 100,000 entries (indexing takes a while)
    .venv/bin/python benchmarks/cache_latency.py --entries 2000 --misses 10 --rounds 1     # a quick check

`infopt serve` (a subprocess: SmolLM2-135M chat, semantic tier on, shadow checks off unless --shadow-share)
runs on the redis backend of a private `redis-server` (a subprocess; or --redis-url). The cache is filled the
way a second server would fill it, not with model calls: this process writes the exact, prompt and semantic
entries of each prompt into the same Redis (the product's tier classes, with the server's model fingerprint
and request form read back from one real answer), and the server indexes each semantic entry from the Redis
event, as it does for entries of its peers (from the vector stored in each entry: this process embeds the prompts
with the server's encoder first). Stored prompts: the `a` texts of the bundled paraphrase pairs
(`same`), then distractors from the bundled corpora; semantic probes: the pairs' `b` texts (not stored); misses:
corpus texts not stored. Requests: one keep-alive client at a time, one request at a time, chat, temperature 0, no
stream. Three clients measure the same hits: httpx (what the `openai` package uses), the standard library's
`http.client` (under `requests` / urllib3) and the raw asyncio socket client of `_machine` (the server's own share).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import numpy as np
from _machine import (  # benchmarks/ is on sys.path when run as a script
    connect,
    cpu_name,
    free_port,
    raw_post,
    server_timing_ms,
)

from infopt.data import load_text_corpus
from infopt.serve._launch import freeze_startup
from infopt.serve._lm_schemas import ChatCompletionRequest
from infopt.serve.cache import CacheRequest
from infopt.serve.cache._encoder import DEFAULT_ENCODER
from infopt.serve.cache._exact import ExactCache, PromptCache
from infopt.serve.cache._pairs import load_pairs
from infopt.serve.cache._redis import RedisBackend
from infopt.serve.cache._semantic_tier import KEY_PREFIX, SemanticResponseTier, load_encoder
from infopt.serve.cache._store import Entry

PATH = "/v1/chat/completions"
NAMESPACE = "bench"
TARGETS = {"exact": 2.0, "semantic": 5.0}


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"infopt serve exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError("infopt serve did not become ready")


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    """The given Redis, or a private `redis-server` (no persistence, no pub/sub buffer limit) on a free port."""
    if url is not None:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("needs redis-server on PATH (apt-get install redis-server), or --redis-url URL")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--client-output-buffer-limit", "pubsub 0 0 0"], stdout=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def server(redis_url: str, shadow_share: float) -> Iterator[str]:
    port = free_port()
    config = Path(tempfile.mkdtemp(prefix="infopt-cache-bench-")) / "serve.toml"
    config.write_text(f'port = {port}\n[models]\nlm = "smollm2-135m"\n[cache]\nbackend = "redis"\n'
                      f'redis_url = "{redis_url}"\nnamespace = "{NAMESPACE}"\n'
                      f"[cache.semantic]\nenabled = true\nshadow_share = {shadow_share}\n")
    cmd = [str(Path(sys.executable).parent / "infopt"), "serve", "--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def body(text: str, max_tokens: int) -> dict[str, Any]:
    return {"model": "lm", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
            "temperature": 0.0, "stream": False}


def prompts(entries: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """(stored prompts, semantic probes, miss prompts): pair `a`s then distractors; pair `b`s; others."""
    positives = [p for p in load_pairs() if p.same]
    stored = list(dict.fromkeys(p.a for p in positives))
    probes = sorted({p.b for p in positives} - set(stored))
    taken = set(stored) | {p.b for p in positives}
    corpus: list[str] = []
    for name in ("rotten-tomatoes", "tweets", "news"):
        corpus += [t[:120] for t in load_text_corpus(name, seed=seed)]  # chat-prompt length; also indexes faster
    corpus = [t for t in dict.fromkeys(corpus) if t not in taken]
    rng = random.Random(seed)
    rng.shuffle(corpus)
    misses, corpus = corpus[:1000], corpus[1000:]
    stored = stored[:entries]
    stored += corpus[: entries - len(stored)]
    have = set(stored)
    while len(stored) < entries:  # the corpora hold ~50,000 texts: pairs of them for the rest
        text = f"{rng.choice(corpus)} {rng.choice(corpus)}"[:120]
        if text not in have:
            have.add(text)
            stored.append(text)
    return stored, probes, misses


class _Writer(SemanticResponseTier):
    """The semantic tier's put without indexing here: the server indexes the entry from the Redis event (from the
    vector stored in the entry)."""

    def _index(self, key: str, scope: str, ns: str, prompt: str, tags: tuple[str, ...],
               expires: float | None, embedding: Any) -> None:
        pass


class _Vectors:
    """Stands in for the tier's `SemanticCache` on puts: the server's encoder, with the stored prompts embedded up
    front in batches (the tier embeds one per put)."""

    def __init__(self, texts: list[str], batch: int = 256) -> None:
        self.encoder = load_encoder(DEFAULT_ENCODER)  # the server's default encoder
        self.name, self.dim = self.encoder.name, self.encoder.dim
        self._vecs: dict[str, np.ndarray] = {}
        for i in range(0, len(texts), batch):
            chunk = [" ".join(t.split()) for t in texts[i : i + batch]]  # as the tier normalises a prompt
            self._vecs.update(zip(chunk, self.encoder.encode(chunk), strict=True))

    def embed(self, text: str) -> np.ndarray:
        vec = self._vecs.get(text)
        return self.encoder.encode_one(text) if vec is None else vec


def seed_answer(redis_url: str, url: str, max_tokens: int) -> tuple[str, dict[str, Any], float]:
    """One real answer through the server; (its model fingerprint, the stored response, model seconds)."""
    import redis

    r = httpx.post(url + PATH, json=body("Say hello to the benchmark.", max_tokens), timeout=120)
    r.raise_for_status()
    client = redis.Redis.from_url(redis_url)
    prefix = f"{NAMESPACE}:e:"
    for name in client.scan_iter(match=f"{prefix}{KEY_PREFIX}*"):
        key = bytes(name).decode()[len(prefix):]
        entry = Entry.decode(bytes(cast(bytes, client.get(name))), key)
        return entry.fingerprint, json.loads(entry.payload)["response"], entry.model_s
    raise RuntimeError("the server stored no semantic entry for its first answer")


def fill(redis_url: str, texts: list[str], fingerprint: str, response: dict[str, Any], model_s: float,
         max_tokens: int) -> float:
    """Write the exact, prompt and semantic entries of `texts`; seconds taken."""
    start = time.perf_counter()
    vectors = _Vectors(texts)
    print(f"embedded {len(texts):,} prompts in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    backend = RedisBackend(redis_url, NAMESPACE)
    tiers = [ExactCache(backend), PromptCache(backend),
             _Writer(backend, cast(Any, vectors), sync=False)]
    for i, text in enumerate(texts):
        form = ChatCompletionRequest.model_validate(body(text, max_tokens)).model_dump()
        request = CacheRequest(PATH, form, fingerprint)
        answer = {**response, "id": f"chatcmpl-fill{i}"}
        if not all(t.put(request, answer, model_s=model_s) for t in tiers):
            raise RuntimeError(f"Redis dropped the entries of prompt {i}")
    backend.close()
    return time.perf_counter() - start


def cache_stats(url: str) -> dict[str, Any]:
    """The server's cache stats by tier (exact, prompt, semantic)."""
    stats = httpx.get(url + "/v1/stats", timeout=300).json()["cache"]
    return {**stats.get("tiers", {}), "semantic": stats.get("semantic", {})}


def server_ms(before: dict[str, Any], after: dict[str, Any], tier: str) -> str:
    """Mean lookup time inside the server's `tier` between two `cache_stats` readings."""
    a, b = after.get(tier, {}), before.get(tier, {})
    n = a.get("lookups", 0) - b.get("lookups", 0)
    if n <= 0:
        return "-"
    total = a["mean_lookup_ms"] * a["lookups"] - b.get("mean_lookup_ms", 0) * b.get("lookups", 0)
    return f"{total / n:.2f}"


def wait_indexed(url: str, want: int, timeout_s: float) -> float:
    """Poll the server's index until it holds `want` entries, or it stops growing past 99% of them (texts that
    normalise to one key are one entry); seconds waited."""
    start, last, still = time.perf_counter(), -1, 0
    while True:
        indexed = int(cache_stats(url)["semantic"].get("indexed", 0))
        waited = time.perf_counter() - start
        print(f"  indexed {indexed:,} / {want:,} after {waited:.0f} s", file=sys.stderr, flush=True)
        still = still + 1 if indexed == last else 0
        if indexed >= want or (indexed >= 0.99 * want and still >= 3):
            return waited
        if waited > timeout_s:
            raise RuntimeError(f"the server indexed {indexed} of {want} entries in {timeout_s:.0f} s")
        last = indexed
        time.sleep(min(15.0, 2.0 + waited / 10))


def measure(client: httpx.Client, texts: list[str], max_tokens: int) -> tuple[dict[str, list[float]], int]:
    """Latency (ms) of each request by the tier that answered (`miss`: the model); and errors."""
    out: dict[str, list[float]] = {}
    errors = 0
    for text in texts:
        start = time.perf_counter()
        r = client.post(PATH, json=body(text, max_tokens))
        ms = (time.perf_counter() - start) * 1000
        if r.status_code != 200:
            errors += 1
            continue
        out.setdefault(r.headers.get("x-infopt-cache", "miss"), []).append(ms)
    return out, errors


def measure_stdlib(url: str, texts: list[str], max_tokens: int) -> dict[str, list[float]]:
    """`measure` from the standard library's keep-alive `http.client` (JSON encoding timed, as in httpx)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
    out: dict[str, list[float]] = {}
    for text in texts:
        start = time.perf_counter()
        conn.request("POST", PATH, json.dumps(body(text, max_tokens)).encode(), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        ms = (time.perf_counter() - start) * 1000
        if resp.status == 200:
            out.setdefault(resp.getheader("x-infopt-cache", "miss"), []).append(ms)
    conn.close()
    return out


def measure_raw(url: str, texts: list[str], max_tokens: int) -> dict[str, list[float]]:
    """`measure` from the raw HTTP/1.1 client of `_machine` instead of httpx: what the server itself takes, next to
    what a typical Python client sees; also the server's own time of each hit (`TIER in server`, from its
    Server-Timing header: the rest of the client's time is the socket, the scheduler and the client)."""
    async def run() -> dict[str, list[float]]:
        (conn,) = await connect(url, 1)
        out: dict[str, list[float]] = {}
        for text in texts:
            ms, status, headers = await raw_post(conn, PATH, body(text, max_tokens))
            if status == 200:
                tier = headers.get(b"x-infopt-cache", b"miss").decode()
                out.setdefault(tier, []).append(ms)
                out.setdefault(f"{tier} in server", []).append(server_timing_ms(headers))
        conn[1].close()
        return out

    return asyncio.run(run())


def row(kind: str, ms: list[float], asked: int, inside: str) -> str:
    target = TARGETS.get(kind)
    limit = "-" if target is None else f"p95 <= {target:g}"
    if not ms:
        return f"| {kind} | 0 of {asked} | - | - | - | {inside} | {limit} | - |"
    p50, p95, p99 = (float(np.percentile(ms, q)) for q in (50, 95, 99))
    met = "-" if target is None else ("yes" if p95 <= target else "no")
    return f"| {kind} | {len(ms)} of {asked} | {p50:.2f} | {p95:.2f} | {p99:.2f} | {inside} | {limit} | {met} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000, help="prompts stored (default 100,000)")
    ap.add_argument("--exact", type=int, default=1000, help="exact-hit probes (stored prompts; default 1000)")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the semantic probes (default 3)")
    ap.add_argument("--misses", type=int, default=50, help="misses that run the model (default 50)")
    ap.add_argument("--max-tokens", type=int, default=16, help="tokens per answer (default 16)")
    ap.add_argument("--shadow-share", type=float, default=0.0,
                    help="share of semantic hits shadow-checked on the model (default 0: no background runs)")
    ap.add_argument("--redis-url", help="use this Redis instead of a private redis-server (namespace 'bench')")
    ap.add_argument("--index-timeout-s", type=float, default=7200.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    stored, probes, misses = prompts(args.entries, args.seed)
    print(f"CPU: {cpu_name()}; {len(stored):,} prompts to store, {len(probes)} paraphrase probes")
    rng = random.Random(args.seed)
    with redis_server(args.redis_url) as redis_url, server(redis_url, args.shadow_share) as url:
        fingerprint, response, model_s = seed_answer(redis_url, url, args.max_tokens)
        fill_s = fill(redis_url, stored, fingerprint, response, model_s, args.max_tokens)
        print(f"wrote {3 * len(stored):,} entries (exact, prompt, semantic) in {fill_s:.0f} s; indexing ...")
        index_s = wait_indexed(url, len(stored) + 1, args.index_timeout_s)
        print(f"the server indexed them in {index_s:.0f} s after the writes")
        freeze_startup()  # this client's own GC sweeps stay out of what it measures
        with httpx.Client(base_url=url, timeout=300, trust_env=False) as client:
            measure(client, rng.sample(stored, 20) + probes[:5], args.max_tokens)  # warm-up
            snaps = [cache_stats(url)]
            exact, e1 = measure(client, rng.sample(stored, min(args.exact, len(stored))), args.max_tokens)
            snaps.append(cache_stats(url))
            semantic, e2 = measure(client, probes * args.rounds, args.max_tokens)
            snaps.append(cache_stats(url))
            missed, e3 = measure(client, misses[: args.misses], args.max_tokens)
        others_by_client = {}
        for client_name, measure_with in (("http.client", measure_stdlib), ("raw socket", measure_raw)):
            exact_texts = rng.sample(stored, min(args.exact, len(stored)))
            others_by_client[client_name] = (measure_with(url, exact_texts, args.max_tokens),
                                             measure_with(url, probes, args.max_tokens))
    sem = snaps[-1]["semantic"]
    others = {k: len(v) for k, v in semantic.items() if k != "semantic"}
    print(f"\n{int(sem.get('indexed', 0)):,} entries in the index; threshold {sem.get('threshold')}; "
          f"errors {e1 + e2 + e3}; paraphrase probes not answered by the semantic tier: {others or 'none'} "
          "(a miss there is stored, and answered by the exact tier in later rounds); miss prompts answered by a "
          f"cache: { {k: len(v) for k, v in missed.items() if k != 'miss'} or 'none'}")
    print(f"\nclient latency in ms, sequential keep-alive requests over loopback ({cpu_name()}); "
          "'in server': mean time inside the tier's lookup (semantic: encoder, index search, guard):")
    print("| kind | answered | p50 | p95 | p99 | in server | target | met |")
    print("|---|---|---|---|---|---|---|---|")
    print(row("exact", exact.get("exact", []), min(args.exact, len(stored)), server_ms(snaps[0], snaps[1], "exact")))
    print(row("semantic", semantic.get("semantic", []), len(probes) * args.rounds,
              server_ms(snaps[1], snaps[2], "semantic")))
    print(row("miss", missed.get("miss", []), min(args.misses, len(misses)), "-"))
    for client_name, (c_exact, c_semantic) in others_by_client.items():
        print(f"\nthe same hits from the {client_name} client:")
        print("| kind | answered | p50 | p95 | p99 | in server | target | met |")
        print("|---|---|---|---|---|---|---|---|")
        print(row("exact", c_exact.get("exact", []), min(args.exact, len(stored)), "-"))
        print(row("semantic", c_semantic.get("semantic", []), len(probes), "-"))
        for kind, asked, answers in (("exact", min(args.exact, len(stored)), c_exact),
                                     ("semantic", len(probes), c_semantic)):
            if f"{kind} in server" in answers:  # the raw client reads the Server-Timing header
                print(row(f"{kind} in server", answers[f"{kind} in server"], asked, "-"))


if __name__ == "__main__":
    main()
