"""Latency, throughput and decode speed, measured after warm-up, tokenization included."""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np
import torch

from infopt.evaluate._results import SpeedResult
from infopt.models import LoadedModel

__all__ = [
    "at_threads",
    "decode_tokens_per_s",
    "interleaved_p50_ms",
    "latencies_ms",
    "measure_speed",
    "throughput",
    "unmeasured_speed",
]


def latencies_ms(
    model: LoadedModel, texts: list[str], warmup: int = 10, iters: int = 200, budget_s: float = 4.0
) -> list[float]:
    """Batch-1 end-to-end latencies over `texts` (cycled), stopping early once `budget_s` is spent."""
    cycle = itertools.cycle(texts)
    for _ in range(warmup):
        model.predict([next(cycle)])
    out: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(out) < iters and (len(out) < 30 or time.perf_counter() < deadline):
        text = next(cycle)
        t0 = time.perf_counter()
        model.predict([text])
        out.append(1000 * (time.perf_counter() - t0))
    return out


def interleaved_p50_ms(models: dict[str, LoadedModel], texts: list[str], rounds: int = 7,
                       iters: int = 80) -> dict[str, float]:
    """Each model's batch-1 p50, as the median over rounds in which every model runs once in turn, so that load
    from other processes hits all of them alike."""
    per_round: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            per_round[name].append(float(np.median(latencies_ms(model, texts, warmup=5, iters=iters, budget_s=1.5))))
    return {name: float(np.median(p50s)) for name, p50s in per_round.items()}


def throughput(model: LoadedModel, texts: list[str], batch_size: int = 32, batches: int = 6) -> float:
    """Items per second over `batches` batches of `batch_size` texts, after one warm-up batch."""
    cycle = itertools.cycle(texts)
    model.predict([next(cycle) for _ in range(batch_size)])
    t0 = time.perf_counter()
    for _ in range(batches):
        model.predict([next(cycle) for _ in range(batch_size)])
    return batches * batch_size / (time.perf_counter() - t0)


@torch.inference_mode()
def decode_tokens_per_s(model: LoadedModel, prompt: str, new_tokens: int = 32, repeats: int = 2) -> float:
    """Greedy decode speed of one stream: (new_tokens - 1) / (time(new_tokens) - time(1 token))."""
    enc = model.tokenizer(prompt, return_tensors="pt")
    enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}  # no token_type_ids
    gen = model.model.generate

    def timed(n: int) -> float:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            gen(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=model.tokenizer.eos_token_id)
            best = min(best, time.perf_counter() - t0)
        return best

    timed(2)  # warm-up
    return (new_tokens - 1) / max(timed(new_tokens) - timed(1), 1e-9)


def at_threads(model: LoadedModel, threads: int | None) -> LoadedModel:
    """`model` with its own session re-made for `threads` intra-op threads (ONNX Runtime / OpenVINO models, which
    keep their thread count per session; others, or None, as they are)."""
    remake = getattr(model.model, "with_threads", None)
    if threads is None or remake is None or getattr(model.model, "threads", None) == threads:
        return model
    return dataclasses.replace(model, model=remake(threads))


def latency_threads(model: LoadedModel, texts: list[str]) -> int | None:
    """1 when a session model runs batch 1 faster on one intra-op thread than on its own count (thread hand-offs
    can cost more than a small model's work at batch 1; on a 2-core Xeon a 3-layer int8 student took 1.21 ms on one
    thread and 1.47 ms on two once, and the other way round in later runs, so it is measured), else None.
    Torch models share one global pool and are left as they are."""
    own = getattr(model.model, "threads", None)
    if not callable(getattr(model.model, "with_threads", None)) or not own or own <= 1:
        return None
    one = at_threads(model, 1)
    p50: dict[int, list[float]] = {}
    for _ in range(2):  # alternate, so that background load hits both alike
        for n, m in ((own, model), (1, one)):
            p50.setdefault(n, []).append(float(np.median(latencies_ms(m, texts, warmup=5, iters=60, budget_s=1.0))))
    return 1 if min(p50[1]) < min(p50[own]) else None


def measure_speed(model: LoadedModel, texts: list[str], batch_size: int = 32, prompt: str | None = None) -> SpeedResult:
    """The full speed profile of one variant, with the batch-1 latencies its percentiles come from (on the thread
    count `latency_threads` finds fastest at batch 1; throughput on the model's own)."""
    fewer = latency_threads(model, texts)
    samples = latencies_ms(at_threads(model, fewer), texts)
    lat = np.array(samples)
    p50, p95, p99 = (float(np.percentile(lat, q)) for q in (50, 95, 99))
    decode = decode_tokens_per_s(model, prompt) if model.task == "causal-lm" and prompt else None
    return SpeedResult(
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        throughput=throughput(model, texts, batch_size),
        batch_size=batch_size,
        threads=torch.get_num_threads(),
        decode_tokens_per_s=decode,
        samples_ms=samples,
        latency_threads=fewer,
    )


def unmeasured_speed(batch_size: int) -> SpeedResult:
    """The speed of a variant that was not timed (rejected on quality first): NaN everywhere, no samples."""
    nan = float("nan")
    return SpeedResult(p50_ms=nan, p95_ms=nan, p99_ms=nan, throughput=nan, batch_size=batch_size,
                       threads=torch.get_num_threads())
