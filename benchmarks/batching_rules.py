"""Which requests a batcher should take, measured in-process on the real int8 teacher (no HTTP): a closed loop of N
clients, each sending a random Rotten Tomatoes text when its last one is answered, under two taking rules:

- `fcfs`: the first `cap` queued items in arrival order, then grouped by length (the rule before `Batcher` took
  from the whole queue; simulated here);
- `batcher`: the real `infopt.serve.Batcher` with `max_batch_size=cap` (every waiting item grouped by length, the
  group of the oldest request runs next), driven by N asyncio clients.

    .venv/bin/python benchmarks/batching_rules.py [--clients 32] [--items 1500]

Prints items/s per rule and cap and the share of the model's in-process ceiling (best sorted batch of 1 to 64).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from _machine import cpu_name  # benchmarks/ is on sys.path when run as a script

from infopt.compress.quantize import quantize
from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.models import LoadedModel, load_model, save_model
from infopt.serve import Batcher, BatchingConfig, group_by_length

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
RULES = (("fcfs", 16), ("batcher", 4), ("batcher", 8), ("batcher", 16), ("batcher", 32))


def fcfs(model: LoadedModel, texts: list[str], lengths: dict[str, int], cap: int, clients: int, items: int) -> float:
    """Items/s of `clients` simulated closed-loop clients when the first `cap` queued items run, grouped by length."""
    rng = random.Random(0)
    queue = [rng.choice(texts) for _ in range(clients)]
    done = 0
    start = time.perf_counter()
    while done < items:
        taken, queue = queue[:cap], queue[cap:]
        for group in group_by_length([lengths[t] for t in taken], cap):
            model.predict([taken[i] for i in group])
        done += len(taken)
        queue += [rng.choice(texts) for _ in taken]
    return done / (time.perf_counter() - start)


async def batcher(model: LoadedModel, texts: list[str], lengths: dict[str, int], cap: int, clients: int,
                  items: int, packed: bool = False, workers: int = 1) -> float:
    """Items/s of `clients` asyncio clients sending one text at a time through a real `Batcher` (`packed`: packed
    batches of the oldest texts, as `infopt serve` runs a model that packs, not padded ones grouped by length;
    `workers` batches at once, as `batching.workers` runs them)."""
    b: Batcher[str, object] = Batcher(model.predict_packed if packed else model.predict,
                                      BatchingConfig(max_batch_size=cap, max_queue=clients),
                                      length=None if packed else lengths.__getitem__, workers=workers)
    b.start()
    rng = random.Random(0)
    sent = 0

    async def client() -> None:
        nonlocal sent
        while sent < items:
            sent += 1
            await b.submit([rng.choice(texts)])

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    rate = sent / (time.perf_counter() - start)
    await b.drain()
    return rate


def ceiling(model: LoadedModel, texts: list[str], packed: bool = False) -> tuple[float, int, dict[int, float]]:
    """Best in-process items/s by batch size (tokenization included): padded batches of texts of similar length,
    sizes 1..64, or (`packed`) packed batches in arrival order, sizes 8..64 (packing needs no sorting)."""
    run = model.predict_packed if packed else model.predict
    order = texts if packed else sorted(texts, key=len)
    per_size = {}
    for bs in BATCH_SIZES[3:] if packed else BATCH_SIZES:
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        run(batches[len(batches) // 2])  # warm-up
        t0 = time.perf_counter()
        for b in batches:
            run(b)
        per_size[bs] = len(order) / (time.perf_counter() - t0)
    best = max(per_size, key=lambda k: per_size[k])
    return per_size[best], best, per_size


def token_lengths(model: LoadedModel, texts: list[str]) -> dict[str, int]:
    return {t: len(model.tokenizer(t)["input_ids"]) for t in texts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--items", type=int, default=1500)
    args = ap.parse_args()
    texts = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0).test.texts
    folder = Path(tempfile.mkdtemp(prefix="infopt-batching-rules-")) / "int8"
    save_model(quantize(load_model("minilm-l6-rt"), "onnx-int8"), folder)
    model = load_model(folder)
    lengths = token_lengths(model, texts)
    top = ceiling(model, texts)[0]
    print(f"CPU: {cpu_name()}; int8 teacher; in-process ceiling {top:.0f} items/s; {args.clients} clients")
    print("| rule | cap | items/s | of the ceiling |\n|---|---|---|---|")
    for rule, cap in RULES:
        if rule == "fcfs":
            rate = fcfs(model, texts, lengths, cap, args.clients, args.items)
        else:
            rate = asyncio.run(batcher(model, texts, lengths, cap, args.clients, args.items))
        print(f"| {rule} | {cap} | {rate:.0f} | {rate / top:.0%} |", flush=True)


if __name__ == "__main__":
    main()
