"""The default teacher against a logistic regression on frozen MiniLM-L6 embeddings, same split, one run.

Run: .venv/bin/python benchmarks/teacher_vs_logreg.py
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.evaluate import classification_quality, embed
from infopt.models import BUNDLED_MODELS, load_model


def main() -> None:
    splits = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0)
    cached = BUNDLED_MODELS["minilm-l6-rt"].is_cached()
    t0 = time.perf_counter()
    teacher = load_model("minilm-l6-rt")
    built_s = time.perf_counter() - t0
    teacher_q = classification_quality(teacher, splits.test, max_length=64)

    encoder = load_model("minilm-l6")
    t0 = time.perf_counter()
    x_train, x_test = embed(encoder, splits.train.texts).numpy(), embed(encoder, splits.test.texts).numpy()
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(x_train, splits.train.labels)
    logreg_acc = 100 * float(np.mean(clf.predict(x_test) == np.array(splits.test.labels)))
    logreg_s = time.perf_counter() - t0

    print(f"rotten-tomatoes test split: {len(splits.test)} reviews (train {len(splits.train)}), seed 0")
    print(f"{'model':<48} {'test accuracy':>14}")
    print(f"{'minilm-l6-rt (fine-tuned teacher)':<48} {teacher_q['accuracy']:>13.2f}%")
    print(f"{'logistic regression on frozen MiniLM-L6 emb.':<48} {logreg_acc:>13.2f}%")
    print(f"teacher - logreg: {teacher_q['accuracy'] - logreg_acc:+.2f} points "
          f"(target: teacher >= 78% and above logreg: "
          f"{'PASS' if teacher_q['accuracy'] >= 78 and teacher_q['accuracy'] > logreg_acc else 'FAIL'})")
    print(f"teacher {'loaded from cache' if cached else 'fine-tuned in this run'} in {built_s:.0f} s; "
          f"logreg embed+fit {logreg_s:.0f} s; manifest accuracy {teacher.manifest.metrics})")


if __name__ == "__main__":
    main()
