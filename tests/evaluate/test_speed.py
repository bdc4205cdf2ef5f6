"""latencies_ms, throughput, decode_tokens_per_s and measure_speed on tiny models."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from infopt.evaluate import (
    SpeedResult,
    decode_tokens_per_s,
    latencies_ms,
    measure_speed,
    throughput,
    unmeasured_speed,
)
from infopt.models import LoadedModel

TEXTS = ["a short text", "a somewhat longer text about films", "hi"]


def _spy_predict(model: LoadedModel) -> list[list[str]]:
    """Record the batches `model.predict` is called with."""
    calls: list[list[str]] = []
    original = model.predict

    def predict(texts: list[str], max_length: int = 128) -> torch.Tensor:
        calls.append(list(texts))
        return original(texts, max_length)

    model.predict = predict  # type: ignore[method-assign]
    return calls


def test_latencies_requested_count(tiny_bert_classifier: LoadedModel) -> None:
    calls = _spy_predict(tiny_bert_classifier)
    lat = latencies_ms(tiny_bert_classifier, TEXTS, warmup=2, iters=7)
    assert len(lat) == 7
    assert all(x > 0 and math.isfinite(x) for x in lat)
    assert len(calls) == 2 + 7
    assert all(len(c) == 1 for c in calls)  # batch 1
    assert [c[0] for c in calls] == [TEXTS[i % 3] for i in range(9)]  # texts cycled


def test_latencies_stop_at_the_budget_after_30(tiny_bert_classifier: LoadedModel) -> None:
    lat = latencies_ms(tiny_bert_classifier, TEXTS, warmup=0, iters=10_000, budget_s=0.0)
    assert len(lat) == 30  # at least 30 samples even when the time budget is spent


def test_throughput_batches(tiny_bert_classifier: LoadedModel) -> None:
    calls = _spy_predict(tiny_bert_classifier)
    items_per_s = throughput(tiny_bert_classifier, TEXTS, batch_size=4, batches=3)
    assert items_per_s > 0 and math.isfinite(items_per_s)
    assert [len(c) for c in calls] == [4, 4, 4, 4]  # one warm-up batch, then 3 timed
    assert calls[0] == [TEXTS[0], TEXTS[1], TEXTS[2], TEXTS[0]]
    assert calls[1][0] == TEXTS[1]  # the cycle continues across batches


def test_decode_tokens_per_s(tiny_llama: LoadedModel) -> None:
    lengths: list[tuple[int, int]] = []
    generate = tiny_llama.model.generate

    def spy(**kwargs: Any) -> torch.Tensor:
        out = generate(**kwargs)
        lengths.append((kwargs["max_new_tokens"], out.shape[1] - kwargs["input_ids"].shape[1]))
        return out

    tiny_llama.model.generate = spy
    tps = decode_tokens_per_s(tiny_llama, "Once upon a time", new_tokens=6, repeats=2)
    assert tps > 0 and math.isfinite(tps)
    # warm-up with 2 tokens, then best of 2 runs with 6 tokens and best of 2 with 1 token
    assert [n for n, _ in lengths] == [2, 2, 6, 6, 1, 1]
    assert all(n == made for n, made in lengths)  # exactly the requested tokens were generated


def test_measure_speed_classifier(tiny_bert_classifier: LoadedModel) -> None:
    speed = measure_speed(tiny_bert_classifier, TEXTS, batch_size=8)
    assert isinstance(speed, SpeedResult)
    assert 0 < speed.p50_ms <= speed.p95_ms <= speed.p99_ms
    assert speed.throughput > 0
    assert speed.batch_size == 8
    assert speed.threads == torch.get_num_threads() == 1
    assert speed.decode_tokens_per_s is None


def test_measure_speed_keeps_the_latency_samples(tiny_bert_classifier: LoadedModel) -> None:
    calls = _spy_predict(tiny_bert_classifier)
    speed = measure_speed(tiny_bert_classifier, TEXTS, batch_size=2)
    batch1 = sum(len(c) == 1 for c in calls)
    assert 30 <= len(speed.samples_ms) <= 200
    assert len(speed.samples_ms) == batch1 - 10  # every timed batch-1 call, not the 10 warm-up calls
    assert all(isinstance(x, float) and x > 0 for x in speed.samples_ms)
    assert speed.p50_ms == np.percentile(speed.samples_ms, 50)
    assert speed.p99_ms == np.percentile(speed.samples_ms, 99)


def test_unmeasured_speed_is_nan() -> None:
    speed = unmeasured_speed(16)
    assert all(math.isnan(x) for x in (speed.p50_ms, speed.p95_ms, speed.p99_ms, speed.throughput))
    assert speed.batch_size == 16 and speed.samples_ms == [] and speed.threads == torch.get_num_threads()


def test_measure_speed_embedder(tiny_bert_embedder: LoadedModel) -> None:
    speed = measure_speed(tiny_bert_embedder, TEXTS, batch_size=4, prompt="ignored for embedders")
    assert 0 < speed.p50_ms <= speed.p99_ms and speed.throughput > 0
    assert speed.decode_tokens_per_s is None


@pytest.mark.parametrize("prompt", [None, "Once upon a time"])
def test_measure_speed_causal_lm(tiny_llama: LoadedModel, prompt: str | None) -> None:
    speed = measure_speed(tiny_llama, TEXTS, batch_size=4, prompt=prompt)
    assert 0 < speed.p50_ms <= speed.p95_ms <= speed.p99_ms
    assert speed.throughput > 0
    if prompt is None:
        assert speed.decode_tokens_per_s is None
    else:
        assert speed.decode_tokens_per_s is not None and speed.decode_tokens_per_s > 0


class _Session:
    """A session-like model whose batch-1 call takes longer on more threads (as a small int8 graph's does)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def with_threads(self, threads: int) -> _Session:
        return _Session(threads)

    def __call__(self, **inputs: Any) -> Any:
        import time
        from types import SimpleNamespace

        time.sleep(0.0005 * self.threads)
        return SimpleNamespace(logits=torch.zeros(inputs["input_ids"].shape[0], 2))


def test_batch_1_latency_takes_the_faster_thread_count(tiny_bert_classifier: LoadedModel) -> None:
    import dataclasses

    from infopt.evaluate import at_threads
    from infopt.evaluate._speed import latency_threads

    model = dataclasses.replace(tiny_bert_classifier, model=_Session(4))
    assert latency_threads(model, TEXTS) == 1
    speed = measure_speed(model, TEXTS, batch_size=4)
    assert speed.latency_threads == 1 and speed.p50_ms < 1.5  # the 0.5 ms session, not the 2 ms one
    assert at_threads(model, 1).model.threads == 1 and at_threads(model, None) is model
    assert latency_threads(dataclasses.replace(model, model=_Session(1)), TEXTS) is None
    assert latency_threads(tiny_bert_classifier, TEXTS) is None  # torch: one global pool, left alone
    assert at_threads(tiny_bert_classifier, 1) is tiny_bert_classifier


def test_an_onnx_session_is_remade_with_its_threads(tiny_bert_classifier: LoadedModel) -> None:
    from infopt.compress.quantize import quantize
    from infopt.evaluate import at_threads

    onnx = quantize(tiny_bert_classifier, "onnx-fp32")
    one = at_threads(onnx, 1)
    assert one.model.threads == 1 and one.model.session.get_session_options().intra_op_num_threads == 1
    torch.testing.assert_close(one.predict(TEXTS), onnx.predict(TEXTS))
