"""Evaluate: task quality, speed, size and memory of each variant, and the side-by-side report."""

from infopt.evaluate._calibration import (
    apply_temperature,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
)
from infopt.evaluate._measure import BenchConfig, EvalSpec, measure, measure_variant
from infopt.evaluate._quality import (
    classification_quality,
    embed,
    embedding_quality,
    perplexity,
    predict_logits,
)
from infopt.evaluate._report import environment, print_table, render_markdown, verdicts, write_report
from infopt.evaluate._results import RunResult, SpeedResult, VariantResult
from infopt.evaluate._speed import (
    decode_tokens_per_s,
    interleaved_p50_ms,
    latencies_ms,
    measure_speed,
    throughput,
)

__all__ = [
    "BenchConfig",
    "EvalSpec",
    "RunResult",
    "SpeedResult",
    "VariantResult",
    "apply_temperature",
    "calibration_report",
    "classification_quality",
    "decode_tokens_per_s",
    "embed",
    "embedding_quality",
    "environment",
    "expected_calibration_error",
    "fit_temperature",
    "interleaved_p50_ms",
    "latencies_ms",
    "measure",
    "measure_speed",
    "measure_variant",
    "perplexity",
    "predict_logits",
    "print_table",
    "render_markdown",
    "throughput",
    "verdicts",
    "write_report",
]
