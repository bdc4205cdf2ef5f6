"""The default teacher on a CUDA GPU: fp32 / fp16 / bf16, batch-1 latency and batch-32 throughput, one run.

Run (on a machine with a GPU): python benchmarks/gpu_teacher.py [--model FOLDER_OR_NAME] [--test-csv FILE]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import numpy as np
import torch

from infopt.data import DataConfig, TextDataset, load_dataset, split_dataset
from infopt.models import LoadedModel, load_model


def _timed_ms(fn: Callable[[], object], iters: int) -> np.ndarray:
    out = []
    for _ in range(iters):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(1000 * (time.perf_counter() - t0))
    return np.array(out)


@torch.inference_mode()
def _measure(loaded: LoadedModel, test: TextDataset, dtype: torch.dtype) -> str:
    model = loaded.model.to("cuda", dtype)

    def run(texts: list[str]) -> torch.Tensor:
        return model(**{k: v.cuda() for k, v in loaded.encode(texts, 64).items()}).logits

    correct = sum(
        (run(test.texts[i : i + 256]).argmax(-1).cpu() == torch.tensor(test.labels[i : i + 256])).sum().item()
        for i in range(0, len(test), 256)
    )
    texts = itertools.cycle(test.texts)
    for _ in range(20):
        run([next(texts)])
    lat = _timed_ms(lambda: run([next(texts)]), 300)
    b32 = float(np.median(_timed_ms(lambda: run(test.texts[:32]), 50)))
    name = str(dtype).split(".")[-1]
    return (f"{name:<9} {100 * correct / len(test):>8.2f}% {np.percentile(lat, 50):>10.2f} "
            f"{np.percentile(lat, 95):>10.2f} {32000 / b32:>12.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="minilm-l6-rt")
    parser.add_argument("--test-csv", help="CSV (text,label) used whole as the test set; default: the teacher's split")
    args = parser.parse_args()
    loaded = load_model(args.model)
    if args.test_csv:
        data = load_dataset(DataConfig(args.test_csv, "text", "label"))
        order = [loaded.manifest.labels.index(n) for n in data.label_names]
        test = TextDataset(data.name, data.texts, [order[y] for y in data.labels], loaded.manifest.labels)
    else:
        test = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0).test
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, {len(test)} test reviews")
    print(f"{'dtype':<9} {'accuracy':>9} {'p50 ms b1':>10} {'p95 ms b1':>10} {'items/s b32':>12}")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        print(_measure(loaded, test, dtype), flush=True)


if __name__ == "__main__":
    main()
