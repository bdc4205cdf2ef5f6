"""A load generator for infopt servers (async httpx), for loopback targets only.

    result = run_loadtest(LoadtestConfig("http://127.0.0.1:8000", model="clf", concurrency=8, requests=500))
    result = run_loadtest(LoadtestConfig(url, model="clf", rate=50.0, duration_s=5))      # open loop, Poisson

Closed loop (`concurrency` workers, each sends its next request when the last one is answered) or open loop
(`rate` requests per second on a Poisson or fixed schedule, whatever the server does). It stops at `requests`
or `duration_s`, whichever comes first, and reads the server's `infopt_batch_size` histogram before and after.
Answers are counted by their `X-Infopt-Cache` header (streams too; none: a miss). `repeat_share` of the texts
repeat one sent earlier; `paraphrase_share` paraphrase one: then the pool is the `a` texts of the bundled pairs
labelled `same` (`infopt.serve.cache._pairs`, both splits), not `data`, and a paraphrase is the `b` (not sent
yet) of a pair whose `a` was sent (none left: a new text).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infopt._config import check_bool, check_choice, check_fraction, check_int, check_number
from infopt.errors import MissingDependency, UserError
from infopt.serve._loadreport import LoadtestResult, Sample, batch_histogram, parse_histogram, summarize

__all__ = ["CACHE_HEADER", "ENDPOINTS", "LoadtestConfig", "Workload", "arrival_times", "check_loopback",
           "plan_workload", "run_loadtest"]

ENDPOINTS = {"classify": "/v1/classify", "embeddings": "/v1/embeddings", "completions": "/v1/completions",
             "chat": "/v1/chat/completions"}
"""The endpoints a load test can drive, by short name."""
_STREAMING = ("completions", "chat")
CACHE_HEADER = "X-Infopt-Cache"
"""The header of a cached answer (`infopt.serve.CACHE_HEADER`; not imported, so a client needs no server)."""


def _is_loopback(host: str) -> bool:
    host = host.rstrip(".")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])  # an IPv6 zone (%eth0) is not part of the address
    except ValueError:
        return False  # any other name: not resolved, so not trusted
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def check_loopback(url: str) -> str:
    """`url` without a trailing slash (http:// added if it has no scheme); UserError unless its host is
    loopback: 127.0.0.0/8, ::1 or localhost. Names are not resolved: any other name is refused."""
    text = url.strip() if "://" in url else f"http://{url.strip()}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise UserError(f"The load test target {url!r} is not an http(s) URL.", "pass e.g. http://127.0.0.1:8000.")
    try:
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise UserError(f"The load test target {url!r} has a bad port.", "pass e.g. http://127.0.0.1:8000.") from None
    if not _is_loopback(parts.hostname or ""):
        raise UserError(f"The load test target {url!r} is not a loopback address; infopt loadtest only sends load "
                        "to this machine.", "run it on the server's machine against http://127.0.0.1:PORT "
                        "(any of 127.0.0.0/8, [::1] or localhost).")
    return text.rstrip("/")


@dataclasses.dataclass(frozen=True)
class LoadtestConfig:
    """One load test of one model behind one endpoint of a loopback server."""

    url: str
    """Base URL of the server, e.g. http://127.0.0.1:8000 (loopback only)."""
    model: str
    """The served model name the requests ask for."""
    endpoint: str = "classify"
    """classify, embeddings, completions or chat."""
    concurrency: int | None = None
    """Closed loop: this many requests in flight (default 4). With `rate`: the most in flight at once."""
    rate: float | None = None
    """Open loop: requests per second."""
    arrival: str = "poisson"
    """Open loop schedule: poisson (exponential gaps) or fixed (1 / rate apart)."""
    duration_s: float = 10.0
    """Stop starting requests after this many seconds."""
    requests: int = 1000
    """Stop after this many requests."""
    data: str = "rotten-tomatoes"
    """A bundled dataset or corpus name, or a .csv / .jsonl / .txt file of texts."""
    text_column: str = "text"
    """The column of the texts in a .csv / .jsonl file."""
    repeat_share: float = 0.0
    """Share of texts that repeat one sent earlier (for cache tests), in [0, 1)."""
    paraphrase_share: float = 0.0
    """Share of texts that paraphrase one sent earlier (bundled pairs; see the module doc), in [0, 1)."""
    batch: int = 1
    """Texts per request (classify, embeddings, completions)."""
    max_tokens: int = 16
    """Tokens to generate per request (completions, chat)."""
    temperature: float | None = None
    """Sampling temperature (completions, chat; None: the server's, 1). Caches only answer 0 (deterministic)."""
    stream: bool = True
    """Stream completions / chat (needed for the time to first token)."""
    timeout_s: float = 30.0
    """Give up on a request after this many seconds."""
    seed: int = 0
    """Seed of the texts chosen and of the Poisson schedule."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", check_loopback(self.url))
        if not isinstance(self.model, str) or not self.model.strip():
            raise UserError(f"LoadtestConfig.model is {self.model!r}, which is not allowed.",
                            "pass --model NAME (a model the server serves; GET /v1/models lists them).")
        check_choice(self, "endpoint", tuple(ENDPOINTS))
        check_int(self, "concurrency", min=1, optional=True)
        check_number(self, "rate", low=0, bounds="()", example=20, optional=True)
        check_choice(self, "arrival", ("poisson", "fixed"))
        check_number(self, "duration_s", low=0, bounds="()", example=10)
        check_int(self, "requests", min=1)
        check_fraction(self, "repeat_share")
        check_fraction(self, "paraphrase_share")
        if self.repeat_share + self.paraphrase_share >= 1:
            raise UserError(f"repeat_share {self.repeat_share:g} + paraphrase_share {self.paraphrase_share:g} is "
                            f"{self.repeat_share + self.paraphrase_share:g}; together they must be below 1.",
                            "lower --repeat-share or --paraphrase-share (the rest of the requests are new texts).")
        check_int(self, "batch", min=1)
        check_int(self, "max_tokens", min=1)
        check_number(self, "temperature", low=0, high=2, example=0, optional=True)
        check_number(self, "timeout_s", low=0, bounds="()", example=30)
        check_bool(self, "stream")
        check_int(self, "seed")
        if self.endpoint == "chat" and self.batch != 1:
            raise UserError("A chat request carries one conversation; --batch does not apply.", "drop --batch.")

    @property
    def mode(self) -> str:
        return "open" if self.rate is not None else "closed"


def arrival_times(n: int, rate: float, arrival: str = "poisson", seed: int = 0) -> list[float]:
    """Start offsets (seconds from the start, first 0) of `n` requests at `rate` per second."""
    if arrival == "fixed":
        return [i / rate for i in range(n)]
    rng = random.Random(seed)
    times, t = [], 0.0
    for _ in range(n):
        times.append(t)
        t += rng.expovariate(rate)
    return times


@dataclasses.dataclass(frozen=True)
class Workload:
    """The texts of each request and the kind of each text: `new`, `repeat` or `paraphrase`."""

    requests: list[list[str]]
    kinds: list[tuple[str, ...]]

    def counts(self, n: int | None = None) -> dict[str, int]:
        """Texts of each kind in the first `n` requests (all by default)."""
        return {k: sum(kinds.count(k) for kinds in self.kinds[:n]) for k in ("new", "repeat", "paraphrase")}


def _paraphrase(rng: random.Random, open_: list[str], left: dict[str, list[str]], seen: set[str]) -> str | None:
    """A paraphrase not sent yet of a random sent text in `open_` (texts left without one leave it), or None."""
    while open_:
        a = rng.choice(open_)
        fresh = [b for b in left[a] if b not in seen]
        if fresh:
            left[a].remove(text := rng.choice(fresh))
            return text
        open_.remove(a)
    return None


def plan_workload(pool: Sequence[str], n: int, batch: int, repeat_share: float, seed: int = 0, *,
                  pairs: Sequence[tuple[str, str]] = (), paraphrase_share: float = 0.0) -> Workload:
    """`n` requests of `batch` texts: each text is, with probability `repeat_share`, one sent before; with
    `paraphrase_share`, the `b` of a pair (a, b) of `pairs` whose `a` was sent and `b` not yet (none left: a new
    text); else new: the next of `pool` not sent yet (deduplicated, shuffled; cycled once all were sent)."""
    if not pool:
        raise UserError("The load test has no texts.", "pass --data with some text in it.")
    rng = random.Random(seed)
    order = list(dict.fromkeys(pool))  # a duplicate in the data would be a repeat nobody asked for
    rng.shuffle(order)
    left: dict[str, list[str]] = {}
    for a, b in dict.fromkeys(p for p in pairs if p[0] != p[1]):
        left.setdefault(a, []).append(b)
    sent: list[str] = []
    seen: set[str] = set()
    open_: list[str] = []  # texts sent that have a paraphrase not sent yet
    in_pool, pool_sent, n_new = set(order), 0, 0
    requests: list[list[str]] = []
    kinds: list[tuple[str, ...]] = []
    for _ in range(n):
        texts: list[str] = []
        kind: list[str] = []
        for _ in range(batch):
            text, draw = None, rng.random() if sent else 1.0
            if draw < repeat_share:
                text = rng.choice(sent)
                kind.append("repeat")
            elif draw < repeat_share + paraphrase_share:
                text = _paraphrase(rng, open_, left, seen)
                if text is not None:
                    kind.append("paraphrase")
            if text is None:
                for _ in range(len(order)):  # skip pool texts already sent as someone's paraphrase
                    text, n_new = order[n_new % len(order)], n_new + 1
                    if text not in seen or pool_sent == len(order):
                        break
                kind.append("new")
            assert text is not None
            if text not in seen:
                seen.add(text)
                sent.append(text)
                pool_sent += text in in_pool
                if left.get(text):
                    open_.append(text)
            texts.append(text)
        requests.append(texts)
        kinds.append(tuple(kind))
    return Workload(requests, kinds)


def _body(config: LoadtestConfig, texts: list[str]) -> dict[str, Any]:
    one: str | list[str] = texts[0] if len(texts) == 1 else texts
    if config.endpoint in ("classify", "embeddings"):
        return {"model": config.model, "input": one, "truncate": True}
    body: dict[str, Any] = {"model": config.model, "max_tokens": config.max_tokens, "stream": config.stream}
    if config.temperature is not None:
        body["temperature"] = float(config.temperature)
    if config.endpoint == "chat":
        return {**body, "messages": [{"role": "user", "content": texts[0]}]}
    return {**body, "prompt": one}


def _content(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or []:
        if choice.get("text") or (choice.get("delta") or {}).get("content"):
            return True
    return False


async def _send(client: Any, config: LoadtestConfig, texts: list[str], started: float) -> Sample:
    """One request; latency from `started` (perf_counter) and the cache tier of its `X-Infopt-Cache` header.
    Status: the HTTP code, or timeout / connection / bad-response (a success whose body cannot be read) /
    stream-error (an error event inside a stream)."""
    import httpx

    path, body = ENDPOINTS[config.endpoint], _body(config, texts)
    ttft: float | None = None
    try:
        if config.endpoint in _STREAMING and config.stream:
            chunks, usage = 0, None
            async with client.stream("POST", path, json=body) as r:
                if r.status_code == 200:
                    async for line in r.aiter_lines():
                        data = line[5:].strip() if line.startswith("data:") else ""
                        if not data or data == "[DONE]":
                            continue
                        chunk = json.loads(data)
                        if chunk.get("error"):  # the server failed after it had started the stream
                            return Sample("stream-error", time.perf_counter() - started)
                        usage = chunk.get("usage") or usage
                        if _content(chunk):
                            chunks += 1
                            ttft = time.perf_counter() - started if ttft is None else ttft
                else:
                    await r.aread()
            items = int((usage or {}).get("completion_tokens", chunks))
        else:
            r = await client.post(path, json=body)
            if config.endpoint in _STREAMING and r.status_code == 200:
                items = int(r.json().get("usage", {}).get("completion_tokens", 0))
            else:
                items = len(texts)
    except httpx.TimeoutException:
        return Sample("timeout", time.perf_counter() - started)
    except httpx.TransportError:
        return Sample("connection", time.perf_counter() - started)
    except (ValueError, AttributeError, TypeError):  # a 200 whose body is not the JSON an endpoint answers
        return Sample("bad-response", time.perf_counter() - started)
    return Sample(str(r.status_code), time.perf_counter() - started, ttft, items, r.headers.get(CACHE_HEADER))


async def _closed(client: Any, config: LoadtestConfig, plan: list[list[str]], deadline: float) -> list[Sample]:
    samples: list[Sample] = []
    next_index = iter(range(len(plan)))

    async def worker() -> None:
        for i in next_index:
            if time.perf_counter() >= deadline:
                return
            samples.append(await _send(client, config, plan[i], time.perf_counter()))

    await asyncio.gather(*(worker() for _ in range(config.concurrency or 4)))
    return samples


async def _open(client: Any, config: LoadtestConfig, plan: list[list[str]], start: float) -> list[Sample]:
    assert config.rate is not None
    limit = asyncio.Semaphore(config.concurrency) if config.concurrency else None

    async def one(texts: list[str], scheduled: float) -> Sample:
        if limit is None:
            return await _send(client, config, texts, scheduled)
        async with limit:
            return await _send(client, config, texts, scheduled)

    tasks = []
    for texts, offset in zip(plan, arrival_times(len(plan), config.rate, config.arrival, config.seed), strict=True):
        if offset >= config.duration_s:
            break
        await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
        tasks.append(asyncio.create_task(one(texts, start + offset)))
    return list(await asyncio.gather(*tasks))


async def _histogram(client: Any, model: str, notes: list[str]) -> dict[str, float] | None:
    import httpx

    try:
        r = await client.get("/metrics")
        if r.status_code != 200:
            notes.append(f"GET /metrics answered {r.status_code}: no server batch sizes.")
            return None
        return parse_histogram(r.text, "infopt_batch_size", {"model": model})
    except (httpx.HTTPError, ValueError) as e:
        notes.append(f"GET /metrics failed ({type(e).__name__}): no server batch sizes.")
        return None


def _workload(config: LoadtestConfig, texts: list[str] | None) -> Workload:
    if config.paraphrase_share == 0:
        from infopt.data import load_text_corpus

        if texts is None:
            texts = load_text_corpus(config.data, text_column=config.text_column, seed=config.seed)
        return plan_workload(texts, config.requests, config.batch, config.repeat_share, config.seed)
    if texts is not None:
        raise UserError("A load test with paraphrase_share takes its texts from the bundled paraphrase pairs.",
                        "drop texts= (or set paraphrase_share to 0).")
    from infopt.serve.cache._pairs import load_pairs

    pairs = [(p.a, p.b) for p in load_pairs() if p.same]  # both splits
    return plan_workload([a for a, _ in pairs], config.requests, config.batch, config.repeat_share, config.seed,
                         pairs=pairs, paraphrase_share=config.paraphrase_share)


async def loadtest_async(config: LoadtestConfig, texts: list[str] | None = None) -> LoadtestResult:
    """`run_loadtest` on the running event loop."""
    try:
        import httpx
    except ImportError:
        raise MissingDependency("infopt loadtest needs httpx.", "pip install httpx") from None
    workload = _workload(config, texts)
    cap = config.concurrency or (4 if config.rate is None else 256)
    limits = httpx.Limits(max_connections=cap, max_keepalive_connections=cap)
    notes: list[str] = []
    # trust_env=False: no proxy from the environment may carry the load off this machine; no redirects either
    async with httpx.AsyncClient(base_url=config.url, timeout=config.timeout_s, limits=limits, trust_env=False,
                                 follow_redirects=False) as client:
        before = await _histogram(client, config.model, notes)
        start = time.perf_counter()
        if config.rate is None:
            samples = await _closed(client, config, workload.requests, start + config.duration_s)
        else:
            samples = await _open(client, config, workload.requests, start)
        elapsed = time.perf_counter() - start
        after = await _histogram(client, config.model, notes) if before is not None else None
    hist = batch_histogram(before, after) if before is not None and after is not None else None
    item = "tokens" if config.endpoint in _STREAMING else "texts"
    if config.endpoint in _STREAMING and config.temperature != 0 and config.repeat_share + config.paraphrase_share:
        notes.append("completions / chat sampled at a temperature above 0 are not cached (unless the server caches "
                     "nondeterministic answers): pass --temperature 0 to measure cache hits.")
    return summarize(samples, elapsed, config=dataclasses.asdict(config), mode=config.mode, item=item,
                     batch_size=hist, notes=notes, workload=workload.counts(len(samples)))


def run_loadtest(config: LoadtestConfig, *, texts: list[str] | None = None,
                 output: str | Path | None = None, overwrite: bool = False) -> LoadtestResult:
    """Run the load test (texts from `config.data` unless given; with `paraphrase_share`, the bundled pairs);
    with `output`, write loadtest.json there (the folder is checked before any request is sent)."""
    from infopt._atomic import atomic_dir, check_output

    if output is not None:
        check_output(output, "loadtest", overwrite)
    result = asyncio.run(loadtest_async(config, texts))
    if output is not None:
        with atomic_dir(output, "loadtest", overwrite) as tmp:
            (tmp / "loadtest.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result
