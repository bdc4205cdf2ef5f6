"""Self-distillation of the default teacher into an early-exit model, measured against the full model in one run.

    .venv/bin/python benchmarks/distill_early_exit.py [--train-limit 4096] [--max-drop 1.0] [--threads 1]

Exit heads (mean-pool -> dense -> tanh -> classes) sit after layers 1-5 of MiniLM-L6-RT; the backbone is frozen
(the full path stays bit-identical to the teacher) and each head learns from the model's own final logits
(T = 4, alpha = 0.5) on the train split (or a seeded --train-limit subset), from pooled states cached on disk.
The exit threshold is the one with the fewest layers run on the validation split whose accuracy drop against the
full model stays within --max-drop points with --confidence one-sided confidence (paired normal bound; 0.5 = the
point estimate). Then, on the test split: accuracy of both, and batch-1 latency (tokenization included) of both
over every test review, interleaved review by review, --threads threads. The model measured is the one saved
(plain HF folder + exits.safetensors) and loaded back.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
from pathlib import Path

import torch

from infopt.compress.distill import DistillConfig, EarlyExitConfig, distill
from infopt.data import DataConfig, Splits, load_dataset, split_dataset
from infopt.evaluate import calibration_report, classification_quality
from infopt.models import LoadedModel, load_model, save_model
from infopt.train import FinetuneConfig


def _batch1_ms(model: LoadedModel, text: str) -> float:
    t0 = time.perf_counter()
    model.predict([text], max_length=64)
    return 1000 * (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-limit", type=int, default=0, help="train reviews the heads learn from (0: all)")
    parser.add_argument("--max-drop", type=float, default=1.0, help="accuracy points the exits may cost")
    parser.add_argument("--confidence", type=float, default=0.95, help="one-sided confidence of that on validation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", help="folder for the early-exit model (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    teacher = load_model("minilm-l6-rt")
    splits = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0)
    train = splits.train
    if args.train_limit and args.train_limit < len(train):
        import random

        train = train.subset(sorted(random.Random(0).sample(range(len(train)), args.train_limit)))
    config = DistillConfig(
        scheme="self", temperature=4.0, alpha=0.5,
        train=FinetuneConfig(epochs=1.0, batch_size=32, lr=1e-4, max_length=64, seed=0),
        early_exit=EarlyExitConfig(max_drop=args.max_drop, confidence=args.confidence),
    )
    t0 = time.perf_counter()
    early = distill(teacher, None, Splits(train, splits.validation, splits.test), config)
    build_s = time.perf_counter() - t0
    folder = Path(args.save or tempfile.mkdtemp(prefix="infopt-ee-")) / "minilm-l6-rt-exit"
    save_model(early, folder)
    early = load_model(folder)
    ee = early.model
    recipe = early.manifest.recipe[-1]["config"]
    print(f"built in {build_s:.0f} s (heads after layers {list(ee.exit_layers)}, trained on {len(train)} reviews); "
          f"threshold {ee.threshold:.4f} chosen on validation: {recipe['validation']}")
    print(f"saved to {folder} and loaded back")

    t_quality = classification_quality(teacher, splits.test, max_length=64)
    e_quality = classification_quality(early, splits.test, max_length=64)
    # batch-1 latency and exit layers over every test review, the two models interleaved review by review
    for text in splits.test.texts[:20]:  # warm-up
        _batch1_ms(teacher, text)
        _batch1_ms(early, text)
    t_ms, e_ms, exits = [], [], []
    for text in splits.test.texts:
        t_ms.append(_batch1_ms(teacher, text))
        e_ms.append(_batch1_ms(early, text))
        exits += ee.last_exit_layers
    calib_t = calibration_report(teacher, splits.validation, splits.test, max_length=64)

    drop = t_quality["accuracy"] - e_quality["accuracy"]
    mean_speedup = statistics.fmean(t_ms) / statistics.fmean(e_ms)
    p50_speedup = statistics.median(t_ms) / statistics.median(e_ms)
    hist = collections.Counter(exits)
    print(f"\n{'model':<28} {'test acc':>8} {'mean ms':>8} {'p50 ms':>7} {'p95 ms':>7} {'mean layers':>11}")
    for name, q, ms, layers in (
        ("minilm-l6-rt (full, 6 layers)", t_quality, t_ms, 6.0),
        ("early exit (self-distilled)", e_quality, e_ms, statistics.fmean(exits)),
    ):
        p95 = sorted(ms)[int(0.95 * len(ms))]
        print(f"{name:<28} {q['accuracy']:>8.2f} {statistics.fmean(ms):>8.2f} {statistics.median(ms):>7.2f} "
              f"{p95:>7.2f} {layers:>11.2f}")
    print("\nexit layer share on test: " + ", ".join(f"layer {k}: {100 * hist[k] / len(exits):.1f}%"
                                                   for k in sorted(hist)))
    print(f"mean latency {mean_speedup:.2f}x lower (p50 {p50_speedup:.2f}x), accuracy drop {drop:+.2f} points "
          f"({args.threads} thread(s), {len(t_ms)} reviews each, interleaved)")
    print(f"target (>= 1.5x lower mean latency, <= 1 point drop): "
          f"{'met' if mean_speedup >= 1.5 and drop <= 1.0 else 'MISSED'}")
    print(f"teacher calibration: ECE {calib_t['ece']:.2f} -> {calib_t['ece_scaled']:.2f} with T = "
          f"{calib_t['temperature']:.2f}")


if __name__ == "__main__":
    main()
