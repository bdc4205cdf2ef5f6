"""Benchmark of the semantic cache: false hits and paraphrase hits on held-out pairs, index and encoder latency.

Calibrates infopt (cosine + guard) on the calibration split to a 1% false-hit budget (95% Clopper-Pearson),
then compares it with plain cosine thresholds on the HELD-OUT split; times index search with 100,000 entries
and the encoder per prompt. Writes the fitted calibration to src/infopt/serve/cache/data/ (the bundled one of that
encoder).

    python benchmarks/semantic_cache.py [--encoder minilm-l3:onnx-int8] [--entries 100000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from infopt.serve.cache._calibrate import calibrate, curve, score_pairs
from infopt.serve.cache._encoder import DEFAULT_ENCODER, ENCODERS, PromptEncoder, check_agreement
from infopt.serve.cache._index import VectorIndex
from infopt.serve.cache._pairs import load_pairs
from infopt.serve.cache._semantic_config import bundled_calibration

COSINES = (0.7, 0.8, 0.85, 0.9, 0.95)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def index_latency(dim: int, entries: int, queries: int = 2000, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((entries, dim)).astype(np.float32)
    index = VectorIndex(dim, capacity=1024)
    t0 = time.perf_counter()
    for i in range(0, entries, 10_000):
        index.add_many([f"k{j}" for j in range(i, min(i + 10_000, entries))], vecs[i : i + 10_000])
    build = time.perf_counter() - t0
    for j in range(0, 1000, 10):
        index.remove(f"k{j}")
    qs = vecs[rng.integers(0, entries, queries)] + 0.3 * rng.standard_normal((queries, dim)).astype(np.float32)
    times, found = [], 0
    for q in qs:
        t = time.perf_counter()
        res = index.search(q, 4)
        times.append(time.perf_counter() - t)
        found += bool(res)
    ms = np.array(times) * 1000
    return {"entries": len(index), "build_s": build, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)), "capacity": index.capacity}


def encoder_latency(encoder: PromptEncoder, prompts: list[str]) -> float:
    encoder.encode(prompts[:4])
    times = []
    for p in prompts:
        t = time.perf_counter()
        encoder.encode_one(p)
        times.append(time.perf_counter() - t)
    return float(np.percentile(np.array(times) * 1000, 50))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default=DEFAULT_ENCODER, choices=ENCODERS)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--budget", type=float, default=0.01)
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}")
    encoder = PromptEncoder.load(args.encoder)
    cal_pairs, held = load_pairs("calibration"), load_pairs("heldout")
    model, _, variant = encoder.name.partition(":")
    if variant != "fp32":
        texts = sorted({t for p in cal_pairs + held for t in (p.a, p.b)})
        agree = check_agreement(encoder, PromptEncoder.load(f"{model}:fp32"), texts)
        print(f"{encoder.name} vs fp32 cosine on {len(texts)} prompts: min {agree['min']:.4f} "
              f"mean {agree['mean']:.4f}")
    calibration = calibrate(score_pairs(cal_pairs, encoder), args.budget, 0.95, encoder=encoder.name)
    calibration.save(bundled_calibration(encoder.name))
    print(f"calibrated on {len(cal_pairs)} pairs: cosine+guard threshold {calibration.threshold:.4f}, "
          f"plain-cosine threshold meeting the budget: {calibration.cosine_threshold}")
    scored = score_pairs(held, encoder)
    same = [p.same for p in scored]
    rows = [("infopt cosine+guard (calibrated)", curve([p.guard_score for p in scored], same,
                                                        [calibration.threshold])[0])]
    rows += [(f"plain cosine >= {t}", curve([p.cosine for p in scored], same, [t])[0]) for t in COSINES]
    rows += [(f"guard, fixed threshold {t}", curve([p.guard_score for p in scored], same, [t])[0]) for t in (0.8,)]
    n_pos, n_neg = sum(same), len(same) - sum(same)
    print(f"\nHELD-OUT: {len(held)} pairs ({n_pos} paraphrases, {n_neg} near misses / unrelated)")
    print(f"{'method':36s} {'threshold':>9s} {'hits':>5s} {'wrong':>5s} {'false-hit':>9s} {'UCB95':>7s} "
          f"{'para hit':>8s}")
    for name, r in rows:
        print(f"{name:36s} {r['threshold']:9.4f} {r['hits']:5d} {r['wrong']:5d} {r['false_hit_rate']:9.2%} "
              f"{r['ucb']:7.2%} {r['recall']:8.1%}")
    by_kind: dict[str, list[int]] = {}
    for p in scored:
        hit = p.guard_score >= calibration.threshold
        by_kind.setdefault(p.kind, [0, 0])[0] += hit
        by_kind[p.kind][1] += 1
    print("infopt hits per kind (held-out): " + ", ".join(f"{k} {h}/{n}" for k, (h, n) in sorted(by_kind.items())))
    lat = index_latency(encoder.dim, args.entries)
    print(f"\nindex (FAISS HNSW, M=16, efSearch=48): {lat['entries']} entries, built in {lat['build_s']:.1f} s, "
          f"search top-4 p50 {lat['p50_ms']:.3f} ms p95 {lat['p95_ms']:.3f} ms p99 {lat['p99_ms']:.3f} ms")
    prompts = [p.a for p in held[:200]]
    print(f"encoder {encoder.name}: p50 {encoder_latency(encoder, prompts):.2f} ms per prompt (batch 1)")


if __name__ == "__main__":
    main()
