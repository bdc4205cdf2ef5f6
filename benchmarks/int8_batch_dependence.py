"""Do a variant's answers depend on the other texts of its batch? The default teacher and its quantized variants
score the 1,280 test reviews alone (batch 1), in random batches of 32 and 64, and in length-sorted batches of 32
(what `infopt serve`'s length grouping and the optimizer's scoring do); flips are counted against batch 1.

    .venv/bin/python benchmarks/int8_batch_dependence.py                       # onnx-int8-vnni, torch-bf16, fp32
    .venv/bin/python benchmarks/int8_batch_dependence.py onnx-int8 dynamic-int8

Dynamic int8 computes its activation scale per batch (padding included), so the same text can get another label
in another batch; float models change only at near-ties.
"""

from __future__ import annotations

import argparse

import numpy as np
from _machine import cpu_name  # benchmarks/ is on sys.path when run as a script

from infopt.compress.quantize import quantize
from infopt.models import load_model
from infopt.optimize import plan_evaluation

LAYOUTS = (("alone (batch 1)", 1, False), ("random batches of 32", 32, False), ("random batches of 64", 64, False),
           ("length-sorted batches of 32", 32, True))


def predictions(model: object, texts: list[str], batch: int, by_length: bool) -> np.ndarray:
    order = np.argsort([len(t) for t in texts], kind="stable") if by_length else np.arange(len(texts))
    out = np.empty(len(texts), dtype=int)
    for i in range(0, len(order), batch):
        rows = order[i:i + batch]
        out[rows] = model.predict([texts[j] for j in rows]).argmax(-1).numpy()  # type: ignore[attr-defined]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("schemes", nargs="*", default=["onnx-int8-vnni", "torch-bf16", "fp32"])
    args = ap.parse_args()
    teacher = load_model("minilm-l6-rt")
    plan = plan_evaluation(teacher, None, eval_limit=None)
    texts, labels = plan.spec.texts, np.array(plan.spec.labels)
    print(f"machine: {cpu_name()}; minilm-l6-rt, {len(texts)} test reviews\n")
    print("| variant | layout | accuracy | flips vs batch 1 |\n|---|---|---|---|")
    for scheme in args.schemes:
        model = teacher if scheme == "fp32" else quantize(teacher, scheme)
        alone = None
        for name, batch, by_length in LAYOUTS:
            pred = predictions(model, texts, batch, by_length)
            alone = pred if alone is None else alone
            print(f"| {scheme} | {name} | {100 * (pred == labels).mean():.2f} | {int((pred != alone).sum())} |",
                  flush=True)


if __name__ == "__main__":
    main()
