"""Batch-1 cost of a saved variant, split: tokenization (ours and the tokenizer's own call), then forward and
predict on the model's own threads and on one thread (a fresh session for ONNX Runtime / OpenVINO models,
`torch.set_num_threads` for torch ones). Texts: the test split of the model's default data.

    .venv/bin/python benchmarks/batch1_threads.py runs/x/variants/distill-l3+prune-structured+onnx-int8-vnni-emb4
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _machine import cpu_name  # benchmarks/ is on sys.path when run as a script

from infopt.data import load_dataset, split_dataset
from infopt.evaluate import at_threads
from infopt.models import load_model
from infopt.optimize._plan import default_data


def p50_ms(f: Callable[[str], object], texts: list[str], n: int = 600) -> float:
    for t in texts[:20]:
        f(t)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        f(texts[i % len(texts)])
        out.append(time.perf_counter() - t0)
    return 1000 * statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a saved variant folder or a bundled name")
    args = parser.parse_args()
    m = load_model(args.model)
    texts = split_dataset(load_dataset(default_data(m)), seed=0).test.texts[:200]
    print(f"CPU: {cpu_name()}; {args.model}")
    print(f"tokenize (LoadedModel.encode) p50 ms {p50_ms(lambda t: m.encode([t]), texts):.3f}")
    own = p50_ms(lambda t: m.tokenizer([t], padding=True, truncation=True, max_length=128, return_tensors="pt"),
                 texts)
    print(f"tokenize (the tokenizer's own call) p50 ms {own:.3f}")
    encs = {t: m.encode([t]) for t in texts}
    threads = torch.get_num_threads()
    for n in (threads, 1):
        model = at_threads(m, n)
        if model is m:
            torch.set_num_threads(n)
        forward = p50_ms(lambda t, model=model: model.forward(encs[t]), texts)
        predict = p50_ms(lambda t, model=model: model.predict([t]), texts)
        print(f"{n} thread(s): forward p50 ms {forward:.3f}, predict p50 ms {predict:.3f}")
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
