"""Drift alerts on the bundled reviews classifier (minilm-l6-rt): tweets vs reviews (seeded simulation over the
real model's outputs).

    .venv/bin/python benchmarks/monitor_drift.py [--texts 1000] [--runs 200]

The classifier scores rotten-tomatoes validation texts (the reference), test texts (the same distribution) and
tweets once; each run then streams inputs drawn from those outputs through a `DriftMonitor` with the default
settings (window 500, PSI > 0.25 or KS > 0.2 alerts, checked every 50 inputs):
  same      3,000 review inputs from the test split: any alert is false
  tweets    1,000 review inputs, then tweets: the inputs after the switch until the alert
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_name

from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.models import load_model
from infopt.monitor import DriftConfig, DriftMonitor


def _features(model, texts: list[str]) -> list[tuple[int, str, float]]:  # type: ignore[no-untyped-def]
    out = []
    labels = model.manifest.labels
    for start in range(0, len(texts), 64):
        chunk = texts[start:start + 64]
        enc = model.encode(chunk, 128)
        probs = torch.softmax(model.forward(enc).float(), -1)
        lengths = enc["attention_mask"].sum(-1).tolist()
        for n, p in zip(lengths, probs, strict=True):
            best = int(p.argmax())
            out.append((int(n), labels[best], float(p[best])))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args()
    torch.manual_seed(0)
    print(f"machine: {cpu_name()}")
    start = time.perf_counter()
    model = load_model("minilm-l6-rt")
    splits = split_dataset(load_dataset(DataConfig("rotten-tomatoes")))
    tweets = load_dataset(DataConfig("tweets"))
    rng = np.random.default_rng(0)
    tweet_texts = [tweets.texts[i] for i in rng.choice(len(tweets.texts), args.texts, replace=False)]
    ref = _features(model, list(splits.validation.texts[: args.texts]))
    same = _features(model, list(splits.test.texts[: args.texts]))
    drift = _features(model, tweet_texts)
    print(f"scored {len(ref) + len(same) + len(drift)} texts in {time.perf_counter() - start:.0f} s")
    settings = DriftConfig()
    false_alarms, delays, first_feature = 0, [], {}
    max_stat = {"psi": 0.0, "ks": 0.0}
    for run in range(args.runs):
        r = np.random.default_rng(run)
        monitor = DriftMonitor(settings, "clf")
        monitor.set_reference(*(list(x) for x in zip(*ref, strict=True)))  # type: ignore[arg-type]
        for i in r.integers(0, len(same), 3000):
            monitor.add(*same[i])
            for st in monitor.stats.values():
                for k in max_stat:
                    max_stat[k] = max(max_stat[k], st.get(k, 0.0))
        false_alarms += monitor.alerted_at is not None
        monitor = DriftMonitor(settings, "clf")
        monitor.set_reference(*(list(x) for x in zip(*ref, strict=True)))  # type: ignore[arg-type]
        for i in r.integers(0, len(same), 1000):
            monitor.add(*same[i])
        pre = monitor.alerted_at is not None
        for k, i in enumerate(r.integers(0, len(drift), 3000)):
            monitor.add(*drift[i])
            if monitor.alert and not pre:
                delays.append(k + 1)
                for f, on in monitor.alerts.items():
                    first_feature[f] = first_feature.get(f, 0) + on
                break
    print(f"same distribution: {false_alarms}/{args.runs} runs of 3,000 inputs raised an alert "
          f"({3000 // settings.check_every - settings.window // settings.check_every + 1} checks each); "
          f"largest statistic seen: PSI {max_stat['psi']:.3f} (threshold {settings.psi_threshold:g}), "
          f"KS {max_stat['ks']:.3f} (threshold {settings.ks_threshold:g})")
    if delays:
        print(f"tweets after 1,000 reviews: alert in {len(delays)}/{args.runs} runs, after median "
              f"{int(np.median(delays))} tweets (max {max(delays)}); features alerting first: {first_feature}")
    ref_l = np.array([x[0] for x in ref])
    tw_l = np.array([x[0] for x in drift])
    print(f"  (mean tokens: reviews {ref_l.mean():.1f}, tweets {tw_l.mean():.1f}; mean confidence: reviews "
          f"{np.mean([x[2] for x in ref]):.3f}, tweets {np.mean([x[2] for x in drift]):.3f})")


if __name__ == "__main__":
    main()
