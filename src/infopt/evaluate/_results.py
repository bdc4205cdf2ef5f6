"""Measurement results as dataclasses that round-trip through JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunResult", "SpeedResult", "VariantResult"]


@dataclass
class SpeedResult:
    """Latency at batch 1 (ms), throughput at a larger batch, and decode speed for causal LMs."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput: float
    """Items per second at `batch_size`."""
    batch_size: int
    threads: int
    decode_tokens_per_s: float | None = None
    """Greedy generation speed of one stream (causal LMs only)."""
    samples_ms: list[float] = field(default_factory=list)
    """The batch-1 latencies the percentiles come from (for distribution plots)."""
    interleaved_p50_ms: float | None = None
    """Batch-1 p50 from interleaved rounds of every kept variant in one process (None: not measured so)."""
    latency_threads: int | None = None
    """Intra-op threads of the batch-1 latencies when fewer than `threads` were faster (ONNX Runtime and OpenVINO
    sessions of small models; None: `threads`)."""


@dataclass
class VariantResult:
    """Everything measured about one model variant."""

    name: str
    method: str
    task: str
    quality: dict[str, float]
    speed: SpeedResult
    size_mb: float
    """Bytes of the weight files on disk, in MB (1e6)."""
    peak_rss_mb: float
    """Peak resident memory of the process that loaded and measured this variant."""
    params: int
    path: str = ""
    fingerprint: str = ""
    notes: list[str] = field(default_factory=list)
    recipe: str = ""
    """The recipe name that built it ("" for the baseline)."""
    n_eval: int = 0
    """Examples (classifiers, embedders) or tokens (LMs) that scored `quality`."""
    quality_ci: dict[str, list[float]] = field(default_factory=dict)
    """Metric -> [low, high], a 95% bootstrap interval."""
    predictions: list[int] = field(default_factory=list)
    """Classifiers: the predicted label of each test example, in order (for flips and paired intervals)."""
    flips: int | None = None
    """Test examples whose prediction differs from the baseline's."""
    delta_ci: list[float] | None = None
    """[low, high] of (quality - baseline quality), a paired 95% bootstrap interval."""
    batch_flips: list[int] | None = None
    """Classifiers: [k, n]: of n test texts classified alone (batch 1), k got another label than in the scored
    batches (dynamic int8 scales activations per batch); None: not checked."""
    status: str = ""
    """`baseline`, `chosen`, `kept` (on the Pareto front), `dominated`, `rejected` or `skipped`."""
    reasons: list[str] = field(default_factory=list)
    """Why it has that status, in words (each missed requirement with its numbers)."""
    cost_per_1k: float | None = None
    """Cost of 1,000 requests at the batch-1 p50 (None: no price per hour configured)."""


@dataclass
class RunResult:
    """One optimisation run: its variants (the first is the baseline) and where it ran."""

    model: str
    task: str
    data: str
    variants: list[VariantResult]
    environment: dict[str, Any]
    quality_metric: str = "accuracy"
    machine: dict[str, Any] = field(default_factory=dict)
    """The measured machine: CPU name, flags (avx2, avx512, vnni, amx, bf16), cores, memory bandwidth."""
    requirements: dict[str, Any] = field(default_factory=dict)
    """The user's requirements and priority, as given."""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    """The decision log, in order: {"variant", "action", "why", "seconds"} per entry."""
    chosen: str | None = None
    """Name of the chosen variant (None: no variant met every requirement)."""
    recommendation: str = ""
    """The recommendation in one sentence."""
    seconds: float = 0.0
    """Wall time of the whole run (the optimisation's own compute, for the break-even)."""
    price_per_hour: float | None = None
    """Price of this machine per hour, for cost per 1,000 requests (None: not configured)."""

    @property
    def baseline(self) -> VariantResult:
        return self.variants[0]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        d = json.loads(text)
        variants = [VariantResult(**{**v, "speed": SpeedResult(**v["speed"])}) for v in d.pop("variants")]
        return cls(variants=variants, **d)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())
