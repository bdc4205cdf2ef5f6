"""The int8 target of the foundation issue, side by side in one run on the default teacher (MiniLM-L6 fine-tuned
on Rotten Tomatoes): >= 2.5x batch-1 p50 speed-up over the fp32 PyTorch teacher, <= 0.5 points accuracy drop,
<= 30% of the fp32 size on disk.

Every variant is saved, loaded back from disk and scored on the whole test and validation splits (batches of 32,
as `infopt optimize` scores them; validation is where choices are made). Agreement with the teacher is reported as
logit SQNR and the number of test predictions that flip. Batch-1 latency (tokenization included) is the median of
interleaved rounds. Calibration texts (static and smooth schemes) are the first 128 training reviews.

Run: .venv/bin/python benchmarks/int8_teacher.py [--rounds 7] [--threads 2] [--output DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from infopt.compress.quantize import QuantConfig, config_from_name, quantize, sqnr
from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.evaluate import interleaved_p50_ms, predict_logits
from infopt.models import LoadedModel, load_model, save_model, weights_mb

VARIANTS: dict[str, QuantConfig | None] = {
    "teacher (fp32 torch)": None,
    "dynamic-int8-emb": config_from_name("dynamic-int8-emb"),
    "onnx-fp32": config_from_name("onnx-fp32"),
    "onnx-static-int8": config_from_name("onnx-static-int8"),
    "onnx-int8 full-range": config_from_name("onnx-int8", reduce_range=False),
    "onnx-int8": config_from_name("onnx-int8"),
    "onnx-smooth-int8": config_from_name("onnx-smooth-int8"),
}


def _accuracy(logits: torch.Tensor, labels: list[int]) -> float:
    return 100 * float((logits.argmax(-1) == torch.tensor(labels)).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="folder for the variants (default: a temp folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # ONNX Runtime sessions take their thread count when loaded
    out = Path(args.output or tempfile.mkdtemp(prefix="infopt-int8-"))
    splits = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0)
    teacher = load_model("minilm-l6-rt")
    calibration = splits.train.texts[:128]
    folders = {name: out / name.replace(" ", "-") for name in VARIANTS}
    loaded: dict[str, LoadedModel] = {}
    for name, config in VARIANTS.items():
        save_model(teacher if config is None else quantize(teacher, config, calibration=calibration), folders[name])
        loaded[name] = load_model(folders[name])
        print(f"built {name}: {loaded[name].manifest.metrics.get('quantize', '')}", flush=True)

    logits = {name: {split: predict_logits(m, getattr(splits, split).texts) for split in ("test", "validation")}
              for name, m in loaded.items()}
    p50 = interleaved_p50_ms(loaded, splits.test.texts[:200], rounds=args.rounds)
    sizes = {name: weights_mb(folder) for name, folder in folders.items()}
    base = "teacher (fp32 torch)"
    ref = logits[base]
    acc = {n: {s: _accuracy(v[s], getattr(splits, s).labels) for s in v} for n, v in logits.items()}
    print(f"\nminilm-l6-rt, {args.threads} thread(s), test {len(splits.test)} / validation {len(splits.validation)} "
          f"reviews; p50 = batch 1 with tokenization, median of {args.rounds} interleaved rounds")
    print(f"{'variant':<22} {'test acc':>8} {'drop':>5} {'val acc':>7} {'drop':>5} {'SQNR dB':>7} {'flips':>5} "
          f"{'p50 ms':>7} {'speed-up':>8} {'MB':>6} {'size':>5}  int8 target")
    for name in loaded:
        drop, vdrop = (acc[base][s] - acc[name][s] for s in ("test", "validation"))
        speed, size = p50[base] / p50[name], sizes[name] / sizes[base]
        flips = int((logits[name]["test"].argmax(-1) != ref["test"].argmax(-1)).sum())
        met = "" if name == base else ("MET" if speed >= 2.5 and drop <= 0.5 and size <= 0.3 else "missed")
        print(f"{name:<22} {acc[name]['test']:>8.2f} {drop:>5.2f} {acc[name]['validation']:>7.2f} {vdrop:>5.2f} "
              f"{sqnr(ref['test'], logits[name]['test']):>7.1f} {flips:>5} {p50[name]:>7.2f} {speed:>7.2f}x "
              f"{sizes[name]:>6.1f} {100 * size:>4.0f}%  {met}")
    print(f"variants in {out}")


if __name__ == "__main__":
    main()
