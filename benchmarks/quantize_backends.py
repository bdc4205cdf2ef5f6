"""Every quantization scheme side by side on one model: latency, size on disk, quality vs float32.

    .venv/bin/python benchmarks/quantize_backends.py [--model minilm-l6] [--runs 100]

Batch 1 is one fixed ~16-token sentence (median of --runs calls after warm-up); batch 32 is 32 review
snippets padded to 64 tokens (median of --runs-32 calls). For a causal LM the batch-1 column is instead
the median milliseconds per generated token (greedy decoding of --new-tokens tokens after that sentence).
All variants are built first, then timed in interleaved rounds, so load from other processes on the
machine hits every row alike. Size is the weight file written by save_model (tokenizer files excluded).
Quality compares with the float32 torch model on the batch-32 inputs: SQNR in dB of the task output and,
for embeddings, the worst cosine similarity.
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
from infopt.models import LoadedModel, load_model, save_model, weights_mb

SENTENCE = "The film's quiet opening scenes slowly build into a moving story about family."
EXTRA_ROWS = {  # variants measured beside the defaults, to show why the defaults are what they are
    "dynamic-int8 7-bit act": ("dynamic-int8", {"activation_bits": 7}),
    "onnx-int8 per-tensor": ("onnx-int8", {"per_channel": False}),
    "onnx-int8 unfused": ("onnx-int8", {"optimize": False}),
    "onnx-static-int8 qdq": ("onnx-static-int8", {"quant_format": "qdq"}),
    "onnx-static-int8 all": ("onnx-static-int8", {"exclude": ()}),
}


def _texts(n: int, seed: int) -> list[str]:
    try:
        from infopt.data import load_text_corpus

        return load_text_corpus("rotten-tomatoes", limit=n, seed=seed)
    except Exception:  # the data package is optional here
        return [f"{SENTENCE} Variation number {i}." for i in range(n)]


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def _quality(task: str, ref: torch.Tensor, out: torch.Tensor) -> str:
    text = f"{sqnr(ref, out):6.1f} dB"
    if task == "embedding":
        text += f"  cos>={float(torch.nn.functional.cosine_similarity(ref, out, dim=-1).min()):.4f}"
    if task == "causal-lm":
        agree = (ref.argmax(-1) == out.argmax(-1)).float().mean()
        text += f"  top-1 agree {float(agree):.3f}"
    return text


def _rows(task: str, only: list[str] | None) -> dict[str, QuantConfig | None]:
    rows: dict[str, QuantConfig | None] = {"fp32 (torch)": None, **QUANT_SCHEMES}
    for label, (scheme, overrides) in EXTRA_ROWS.items():
        rows[label] = config_from_name(scheme, **overrides)
    if only:
        rows = {k: v for k, v in rows.items() if k in only or v is None}
    if task == "causal-lm":
        rows = {k: v for k, v in rows.items() if v is None or v.kind == "torch"}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--runs", type=int, default=100, help="timed batch-1 calls per row")
    parser.add_argument("--runs-32", type=int, default=15, help="timed batch-32 calls per row")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--new-tokens", type=int, default=32, help="causal LM: tokens generated per timed call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--schemes", nargs="*", help="rows to run (default: all applicable + variants)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    base = load_model(args.model)
    lm = base.task == "causal-lm"
    one = base.tokenizer([SENTENCE], return_tensors="pt")
    if lm and base.tokenizer.pad_token is None:
        base.tokenizer.pad_token = base.tokenizer.eos_token
    many = base.tokenizer(_texts(32, seed=0), padding="max_length", truncation=True, max_length=64,
                          return_tensors="pt")
    calibration = _texts(128, seed=1)
    b1_label = "decode ms/tok" if lm else "b1 p50 ms"
    print(f"{args.model} ({base.task}), {torch.get_num_threads()} threads, batch 1 x {one['input_ids'].shape[1]} "
          f"tokens, batch 32 x 64 tokens, torch {torch.__version__}")

    models: dict[str, LoadedModel] = {}
    info: dict[str, tuple[float, float, str]] = {}
    reference = base.forward(many)
    with tempfile.TemporaryDirectory() as tmp:
        for label, config in _rows(base.task, args.schemes).items():
            start = time.perf_counter()
            model = base if config is None else quantize(base, config, calibration=calibration)
            build = time.perf_counter() - start
            folder = Path(tmp) / label.replace(" ", "_")
            save_model(model, folder)
            models[label] = model
            info[label] = (build, weights_mb(folder), _quality(base.task, reference, model.forward(many)))
            print(f"  built {label} in {build:.1f} s", flush=True)

    def b1_call(m: LoadedModel) -> Callable[[], object]:
        if lm:
            ids = one["input_ids"]
            return lambda: m.model.generate(ids, attention_mask=one["attention_mask"], do_sample=False,
                                            max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
        return lambda: m.forward(one)

    b1_runs = max(1, (3 if lm else args.runs) // args.rounds)
    b32_runs = max(1, args.runs_32 // args.rounds)
    b1: dict[str, list[float]] = {k: [] for k in models}
    b32: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():  # warm-up
            for _ in range(1 if lm else 10):
                b1_call(m)()
            m.forward(many)
        for _ in range(args.rounds):
            for label, m in models.items():
                b1[label] += [t / (args.new_tokens if lm else 1) for t in _timed(b1_call(m), b1_runs)]
                b32[label] += _timed(lambda m=m: m.forward(many), b32_runs)

    header = (f"{'scheme':24s} {b1_label:>13s} {'b32 ms':>8s} {'size MB':>8s} {'b1 x':>6s} {'b32 x':>6s} "
              f"{'size %':>6s} {'build s':>7s}  quality vs fp32")
    print(header)
    print("-" * len(header))
    ref_b1, ref_b32 = statistics.median(b1["fp32 (torch)"]), statistics.median(b32["fp32 (torch)"])
    ref_size = info["fp32 (torch)"][1]
    for label in models:
        t1, t32 = statistics.median(b1[label]), statistics.median(b32[label])
        build, size, quality = info[label]
        print(f"{label:24s} {t1:13.2f} {t32:8.1f} {size:8.1f} {ref_b1 / t1:6.2f} {ref_b32 / t32:6.2f} "
              f"{100 * size / ref_size:6.1f} {build:7.1f}  {quality}")
    print("b1 x / b32 x: speed-up over fp32 torch; size %: weight file vs fp32 torch.")


if __name__ == "__main__":
    main()
