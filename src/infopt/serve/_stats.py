"""Rolling windows of latencies and batch sizes, and their percentiles, for `GET /v1/stats`; what 1,000 requests
cost at the machine's price."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

__all__ = ["Stats", "Window", "percentile"]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between the closest ranks; 0.0 when empty."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class Window:
    """The last `size` observations (`total`: the sum of all; `window_sum`: of the window's, kept as they come)."""

    def __init__(self, size: int = 10_000) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.count = 0
        self.total = self.window_sum = 0.0

    def add(self, value: float) -> None:
        if len(self.values) == self.values.maxlen:
            self.window_sum -= self.values[0]
        self.values.append(value)
        self.window_sum += value
        self.count += 1
        self.total += value

    def summary(self, scale: float = 1.0) -> dict[str, float]:
        """count (all time), mean, p50, p95, p99 and max of the window, values times `scale`."""
        vs = list(self.values)
        return {
            "count": self.count,
            "mean": round(scale * sum(vs) / len(vs), 4) if vs else 0.0,
            **{f"p{q}": round(scale * percentile(vs, q), 4) for q in (50, 95, 99)},
            "max": round(scale * max(vs), 4) if vs else 0.0,
        }


class _ModelStats:
    def __init__(self) -> None:
        self.request_s = Window()
        self.queue_wait_s = Window()
        self.inference_s = Window()
        self.batch_size = Window()
        self.first_token_s = Window()
        self.inputs = 0
        self.tokens = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0


class Stats:
    """Per-model windows: request duration, queue wait, inference time per batch, batch size."""

    def __init__(self, price_per_hour: float = 0.0) -> None:
        self.price_per_hour = price_per_hour
        self.started = time.time()
        self.models: dict[str, _ModelStats] = {}

    def model(self, name: str) -> _ModelStats:
        return self.models.setdefault(name, _ModelStats())

    def cost_per_1k_requests(self, m: _ModelStats) -> float:
        """price_per_hour × the mean duration of the window's successful requests × 1,000 (one request at a
        time: an upper bound where requests are batched or overlap)."""
        window = m.request_s
        mean_s = window.window_sum / len(window.values) if window.values else 0.0
        return round(self.price_per_hour / 3600 * mean_s * 1000, 8)

    def to_json(self) -> dict[str, Any]:
        """Milliseconds for times; cost per 1,000 inputs at full load from the measured inference time, and per
1,000 requests from the mean request duration."""
        out: dict[str, Any] = {}
        for name, m in self.models.items():
            busy_s = m.inference_s.total
            per_input_s = busy_s / m.inputs if m.inputs else 0.0
            out[name] = {
                "inputs": m.inputs,
                "tokens": m.tokens,
                "request_ms": m.request_s.summary(1000),
                "queue_wait_ms": m.queue_wait_s.summary(1000),
                "inference_ms": m.inference_s.summary(1000),
                "batch_size": m.batch_size.summary(),
                "inputs_per_busy_second": round(1 / per_input_s, 2) if per_input_s else 0.0,
                "cost_per_1k_inputs": round(self.price_per_hour / 3600 * per_input_s * 1000, 8),
                "cost_per_1k_requests_usd": self.cost_per_1k_requests(m),
                "prompt_tokens": m.prompt_tokens,
                "completion_tokens": m.completion_tokens,
                "time_to_first_token_ms": m.first_token_s.summary(1000),
            }
        return {"uptime_s": round(time.time() - self.started, 1), "price_per_hour": self.price_per_hour,
                "models": out}
