"""Prometheus metrics (names prefixed `infopt_`, one registry per app) and the /v1/stats windows, fed by the
HTTP layer and by the batchers (this class is their `BatchObserver`)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from infopt.serve._stats import Stats

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Metrics"]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Counters, histograms and gauges of one server, plus the rolling `stats`."""

    def __init__(self, price_per_hour: float = 0.0) -> None:
        self.registry = CollectorRegistry()
        self.stats = Stats(price_per_hour)
        r = self.registry
        self.requests = Counter("infopt_requests", "HTTP requests by endpoint, model and status code.",
                                ["endpoint", "model", "status"], registry=r)
        self.request_seconds = Histogram("infopt_request_duration_seconds", "Time from request to response.",
                                         ["endpoint", "model"], buckets=_LATENCY, registry=r)
        self.queue_wait_seconds = Histogram("infopt_queue_wait_seconds", "Time a request waited for its batch.",
                                            ["model"], buckets=_LATENCY, registry=r)
        self.inference_seconds = Histogram("infopt_inference_seconds", "Time of one batched model call.",
                                           ["model"], buckets=_LATENCY, registry=r)
        self.batch_size = Histogram("infopt_batch_size", "Inputs per model call.", ["model"], buckets=_SIZES,
                                    registry=r)
        self.queue_depth_gauge = Gauge("infopt_queue_depth", "Requests waiting in the model's queue.", ["model"],
                                       registry=r)
        self.rejections = Counter("infopt_rejections", "Requests answered with an error, by reason.",
                                  ["model", "reason"], registry=r)
        self.inputs = Counter("infopt_inputs", "Texts run through the model.", ["model"], registry=r)
        self.tokens = Counter("infopt_tokens", "Tokens of the texts run through the model.", ["model"], registry=r)
        self.ready = Gauge("infopt_ready", "1 when the server takes requests, else 0.", registry=r)

    def add_model(self, model: str) -> None:
        """Make the model's series exist from the start (at zero)."""
        self.queue_depth_gauge.labels(model).set(0)
        self.inputs.labels(model)
        self.tokens.labels(model)
        self.stats.model(model)

    # ------------------------------------------------------------ from the HTTP layer

    def request(self, endpoint: str, model: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, model, str(status)).inc()
        self.request_seconds.labels(endpoint, model).observe(seconds)
        if model in self.stats.models and status < 400:
            self.stats.model(model).request_s.add(seconds)

    def rejected(self, model: str, reason: str) -> None:
        self.rejections.labels(model, reason).inc()

    def counted(self, model: str, tokens: int) -> None:
        self.tokens.labels(model).inc(tokens)
        self.stats.model(model).tokens += tokens

    # ------------------------------------------------------------ BatchObserver

    def queue_depth(self, model: str, depth: int) -> None:
        self.queue_depth_gauge.labels(model).set(depth)

    def queue_wait(self, model: str, seconds: float) -> None:
        self.queue_wait_seconds.labels(model).observe(seconds)
        self.stats.model(model).queue_wait_s.add(seconds)

    def batch(self, model: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.inference_seconds.labels(model).observe(seconds)
        self.inputs.labels(model).inc(size)
        m = self.stats.model(model)
        m.batch_size.add(size)
        m.inference_s.add(seconds)
        m.inputs += size

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
