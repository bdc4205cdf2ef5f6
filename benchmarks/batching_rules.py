"""Which requests a batcher should take, measured in-process on the real int8 teacher (no HTTP): a simulated closed
loop of N clients, each sending a random Rotten Tomatoes text when its last one is answered, under two taking rules:

- `fcfs`: the first `cap` queued items in arrival order, then grouped by length (what `Batcher._take` does today);
- `oldest`: every queued item grouped by length (`group_by_length`, groups of at most `cap`), then the group of the
  oldest request runs (no starvation: the oldest always runs next).

    .venv/bin/python benchmarks/batching_rules.py [--clients 32] [--items 1500]

Prints items/s per rule and the share of the model's in-process ceiling (best sorted batch of 1, 8, 16, 32).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from _machine import cpu_name  # benchmarks/ is on sys.path when run as a script

from infopt.compress.quantize import quantize
from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.models import LoadedModel, load_model, save_model
from infopt.serve._batcher import PAD_BUDGET, group_by_length

RULES = (("fcfs", 16, PAD_BUDGET), ("oldest", 16, PAD_BUDGET), ("oldest", 8, 128), ("oldest", 8, PAD_BUDGET),
         ("oldest", 4, PAD_BUDGET))


def closed_loop(model: LoadedModel, texts: list[str], lengths: dict[str, int], rule: str, cap: int, pad: int,
                clients: int, items: int, seed: int = 0) -> float:
    """Items/s of `clients` closed-loop clients under `rule`."""
    rng = random.Random(seed)
    queue = [(i, rng.choice(texts)) for i in range(clients)]  # (arrival order, text)
    arrived, done = clients, 0
    start = time.perf_counter()
    while done < items:
        if rule == "fcfs":
            finished = queue[:cap]
            for group in group_by_length([lengths[t] for _, t in finished], cap, pad):
                model.predict([finished[i][1] for i in group])
            queue = queue[cap:]
        else:
            groups = group_by_length([lengths[t] for _, t in queue], cap, pad)
            oldest = min(range(len(queue)), key=lambda i: queue[i][0])
            chosen = set(next(g for g in groups if oldest in g))
            finished = [queue[i] for i in sorted(chosen)]
            model.predict([t for _, t in finished])
            queue = [q for i, q in enumerate(queue) if i not in chosen]
        done += len(finished)
        for _ in finished:
            queue.append((arrived, rng.choice(texts)))
            arrived += 1
    return done / (time.perf_counter() - start)


def ceiling(model: LoadedModel, texts: list[str]) -> float:
    order = sorted(texts, key=len)
    best = 0.0
    for bs in (1, 8, 16, 32):
        start = time.perf_counter()
        for i in range(0, len(order), bs):
            model.predict(order[i : i + bs])
        best = max(best, len(order) / (time.perf_counter() - start))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--items", type=int, default=1500)
    args = ap.parse_args()
    texts = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0).test.texts
    folder = Path(tempfile.mkdtemp(prefix="infopt-batching-rules-")) / "int8"
    save_model(quantize(load_model("minilm-l6-rt"), "onnx-int8"), folder)
    model = load_model(folder)
    lengths = {t: len(model.tokenizer(t)["input_ids"]) for t in texts}
    model.predict(texts[:16])
    top = ceiling(model, texts)
    print(f"CPU: {cpu_name()}; int8 teacher; in-process ceiling {top:.0f} items/s; {args.clients} clients")
    print("| rule | cap | pad budget | items/s | of the ceiling |\n|---|---|---|---|---|")
    for rule, cap, pad in RULES:
        rate = closed_loop(model, texts, lengths, rule, cap, pad, args.clients, args.items)
        print(f"| {rule} | {cap} | {pad} | {rate:.0f} | {rate / top:.0%} |", flush=True)


if __name__ == "__main__":
    main()
