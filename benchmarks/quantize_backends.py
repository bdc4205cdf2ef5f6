"""Every quantization scheme side by side on one model: latency, size on disk, quality vs float32.

    .venv/bin/python benchmarks/quantize_backends.py [--model minilm-l6] [--runs 100]

Batch 1 is one fixed ~16-token sentence (median of --runs calls after warm-up); batch 32 is 32 review
snippets padded to 64 tokens (median of --runs-32 calls). Size is the weight file written by save_model
(tokenizer files excluded). Quality compares with the float32 torch model on the batch-32 inputs:
SQNR in dB of the task output and, for embeddings, the worst cosine similarity.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from infopt.compress.quantize import QUANT_SCHEMES, QuantConfig, config_from_name, quantize, sqnr
from infopt.models import LoadedModel, load_model, save_model
from infopt.models._manifest import WEIGHT_FILES

SENTENCE = "The film's quiet opening scenes slowly build into a moving story about family."
EXTRA_ROWS = {  # variants measured beside the defaults, to show why the defaults are what they are
    "onnx-int8 per-tensor": ("onnx-int8", {"per_channel": False}),
    "onnx-static-int8 qdq": ("onnx-static-int8", {"quant_format": "qdq"}),
    "onnx-static-int8 all": ("onnx-static-int8", {"exclude": ()}),
}


def _texts(n: int, seed: int) -> list[str]:
    try:
        from infopt.data import load_text_corpus

        return load_text_corpus("rotten-tomatoes", limit=n, seed=seed)
    except Exception:  # the data package is optional here
        return [f"{SENTENCE} Variation number {i}." for i in range(n)]


def _median_ms(fn: Callable[[], object], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _weights_mb(folder: Path) -> float:
    return sum((folder / n).stat().st_size for n in WEIGHT_FILES if (folder / n).exists()) / 1e6


def _quality(task: str, ref: torch.Tensor, out: torch.Tensor) -> str:
    text = f"{sqnr(ref, out):6.1f} dB"
    if task == "embedding":
        text += f"  cos>={float(torch.nn.functional.cosine_similarity(ref, out, dim=-1).min()):.4f}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--runs", type=int, default=100, help="timed batch-1 calls per row")
    parser.add_argument("--runs-32", type=int, default=15, help="timed batch-32 calls per row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--schemes", nargs="*", help="rows to run (default: all applicable + variants)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    base = load_model(args.model)
    one = base.tokenizer([SENTENCE], return_tensors="pt")
    many = base.tokenizer(_texts(32, seed=0), padding="max_length", truncation=True, max_length=64,
                          return_tensors="pt")
    calibration = _texts(128, seed=1)
    print(f"{args.model} ({base.task}), {torch.get_num_threads()} threads, batch 1 x {one['input_ids'].shape[1]} "
          f"tokens, batch 32 x 64 tokens, torch {torch.__version__}")

    rows: dict[str, tuple[str, QuantConfig | None]] = {"fp32 (torch)": ("", None)}
    for name, config in QUANT_SCHEMES.items():
        rows[name] = (name, config)
    for label, (scheme, overrides) in EXTRA_ROWS.items():
        rows[label] = (scheme, config_from_name(scheme, **overrides))
    if args.schemes:
        rows = {k: v for k, v in rows.items() if k in args.schemes or k == "fp32 (torch)"}
    if base.task == "causal-lm":
        rows = {k: v for k, v in rows.items() if v[1] is None or v[1].kind == "torch"}

    reference = base.forward(many)
    header = (f"{'scheme':24s} {'b1 p50 ms':>9s} {'b32 ms':>8s} {'size MB':>8s} {'b1 x':>6s} {'b32 x':>6s} "
              f"{'size %':>6s} {'build s':>7s}  quality vs fp32")
    print(header)
    print("-" * len(header))
    fp32: tuple[float, float, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for label, (_scheme, config) in rows.items():
            start = time.perf_counter()
            model: LoadedModel = base if config is None else quantize(base, config, calibration=calibration)
            build = time.perf_counter() - start
            save_model(model, Path(tmp) / label.replace(" ", "_"))
            size = _weights_mb(Path(tmp) / label.replace(" ", "_"))
            b1 = _median_ms(lambda m=model: m.forward(one), args.runs, warmup=10)
            b32 = _median_ms(lambda m=model: m.forward(many), args.runs_32, warmup=2)
            quality = _quality(base.task, reference, model.forward(many))
            fp32 = fp32 or (b1, b32, size)
            print(f"{label:24s} {b1:9.2f} {b32:8.1f} {size:8.1f} {fp32[0] / b1:6.2f} {fp32[1] / b32:6.2f} "
                  f"{100 * size / fp32[2]:6.1f} {build:7.1f}  {quality}", flush=True)
    print("b1 x / b32 x: speed-up over fp32 torch; size %: weight file vs fp32 torch.")


if __name__ == "__main__":
    main()
