"""In-process time of the exact + prompt lookup (`CacheStack.get`) of chat requests over Redis: first through a
fresh local front (entries another process wrote: one MGET, the read-through), then the same requests from the
front. What `cache_latency.py` sees inside the server, without HTTP.

    .venv/bin/python benchmarks/cache_lookup.py                  # a private redis-server (or --redis-url URL)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _machine import cpu_name  # benchmarks/ is on sys.path when run as a script
from cache_latency import PATH, body, redis_server

from infopt.serve._lm_schemas import ChatCompletionRequest
from infopt.serve.cache import CacheRequest
from infopt.serve.cache._exact import ExactCache, PromptCache
from infopt.serve.cache._redis import RedisBackend
from infopt.serve.cache._store_config import CacheConfig
from infopt.serve.cache._store_stack import CacheStack

NAMESPACE = "bench-lookup"
ANSWER = {"id": "chatcmpl-x", "object": "chat.completion", "usage": {"prompt_tokens": 10, "completion_tokens": 16},
          "choices": [{"index": 0, "finish_reason": "length",
                       "message": {"role": "assistant", "content": "hello there " * 5}}]}


def row(name: str, seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"| {name} | {len(ms)} | {np.percentile(ms, 50):.3f} | {np.percentile(ms, 95):.3f} | {ms.mean():.3f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--redis-url", help="use this Redis instead of a private redis-server")
    args = ap.parse_args()
    with redis_server(args.redis_url) as url:
        writer = RedisBackend(url, NAMESPACE)  # another process's writes
        tiers = [ExactCache(writer), PromptCache(writer)]
        forms = [ChatCompletionRequest.model_validate(body(f"prompt number {i} about films", 16)).model_dump()
                 for i in range(args.requests)]
        for form in forms:
            assert all(t.put(CacheRequest(PATH, form, "fp-bench"), ANSWER) for t in tiers)
        stack = CacheStack.open(CacheConfig(backend="redis", redis_url=url, namespace=NAMESPACE))
        timings: dict[str, list[float]] = {"through Redis (fresh front)": [], "from the local front": []}
        for name, samples in timings.items():
            for form in forms:
                request = CacheRequest(PATH, form, "fp-bench")  # a new request each time, as the server makes
                start = time.perf_counter()
                hit = stack.get(request)
                samples.append(time.perf_counter() - start)
                assert hit is not None and hit.tier == "exact", name
        writer.clear()
        stack.close()
        writer.close()
    print(f"CPU: {cpu_name()}; exact hits of chat requests, CacheStack.get in-process, ms:")
    print("| lookup | requests | p50 | p95 | mean |\n|---|---|---|---|---|")
    for name, samples in timings.items():
        print(row(name, samples))


if __name__ == "__main__":
    main()
