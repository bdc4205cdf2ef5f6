"""Where onnx-int8 loses accuracy on the default teacher: keep one group of matmuls in fp32 at a time.

Scores each variant against the fp32 teacher on validation reviews (never the test split): logit SQNR, KL divergence
and predictions that flip, next to the size on disk.
Run: .venv/bin/python benchmarks/onnx_int8_sensitivity.py [--texts 400]
"""

from __future__ import annotations

import argparse

import torch

from infopt.compress.quantize import config_from_name, quantize, sqnr
from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.evaluate import predict_logits
from infopt.models import load_model

GROUPS: dict[str, tuple[str, ...]] = {
    "all int8": (),
    "Q/K/V fp32": ("*.attention.self.*",),
    "attention out fp32": ("*.attention.output.dense",),
    "FFN up fp32": ("*.intermediate.dense",),
    "FFN down fp32": ("bert.encoder.layer.?.output.dense",),
    "pooler+classifier fp32": ("bert.pooler.dense", "classifier"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=400, help="validation reviews scored")
    args = parser.parse_args()
    splits = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0)
    teacher = load_model("minilm-l6-rt")
    texts = splits.validation.texts[: args.texts]
    ref = predict_logits(teacher, texts)
    print(f"{'variant':<24} {'SQNR dB':>8} {'KL':>9} {'flips':>6} {'MB':>6}")
    for name, exclude in GROUPS.items():
        q = quantize(teacher, config_from_name("onnx-int8", exclude=exclude))
        out = predict_logits(q, texts)
        kl = torch.nn.functional.kl_div(out.log_softmax(-1), ref.log_softmax(-1), log_target=True,
                                        reduction="batchmean")
        flips = int((out.argmax(-1) != ref.argmax(-1)).sum())
        print(f"{name:<24} {sqnr(ref, out):>8.2f} {float(kl):>9.5f} {flips:>6} "
              f"{q.model.path.stat().st_size / 1e6:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
