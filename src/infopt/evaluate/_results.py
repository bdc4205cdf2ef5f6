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


@dataclass
class RunResult:
    """One optimisation run: its variants (the first is the baseline) and where it ran."""

    model: str
    task: str
    data: str
    variants: list[VariantResult]
    environment: dict[str, Any]
    quality_metric: str = "accuracy"

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
