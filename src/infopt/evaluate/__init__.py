"""Evaluate: task quality, speed, size and memory of each variant, and the side-by-side report."""

from infopt.evaluate._calibration import (
    apply_temperature,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
)
from infopt.evaluate._measure import BenchConfig, EvalSpec, measure, measure_variant
from infopt.evaluate._quality import (
    Scored,
    batch_flips,
    classification_quality,
    classify,
    embed,
    embedding_quality,
    perplexity,
    predict_logits,
    score_classification,
    score_embedding,
    score_perplexity,
)
from infopt.evaluate._report import environment, read_results, rerender_report, verdicts, write_report
from infopt.evaluate._report_html import render_html
from infopt.evaluate._report_md import render_markdown
from infopt.evaluate._results import RunResult, SpeedResult, VariantResult
from infopt.evaluate._speed import (
    at_threads,
    decode_tokens_per_s,
    interleaved_p50_ms,
    latencies_ms,
    measure_speed,
    throughput,
    unmeasured_speed,
)
from infopt.evaluate._stats import (
    Comparison,
    classification_ci,
    compare,
    difference_words,
    mean_ci,
    one_example_words,
    perplexity_ci,
    rejection,
    within_noise,
)
from infopt.evaluate._table import print_table

__all__ = [
    "BenchConfig",
    "Comparison",
    "EvalSpec",
    "RunResult",
    "Scored",
    "SpeedResult",
    "VariantResult",
    "apply_temperature",
    "at_threads",
    "batch_flips",
    "calibration_report",
    "classification_ci",
    "classification_quality",
    "classify",
    "compare",
    "decode_tokens_per_s",
    "difference_words",
    "embed",
    "embedding_quality",
    "environment",
    "expected_calibration_error",
    "fit_temperature",
    "interleaved_p50_ms",
    "latencies_ms",
    "mean_ci",
    "measure",
    "measure_speed",
    "measure_variant",
    "one_example_words",
    "perplexity",
    "perplexity_ci",
    "predict_logits",
    "print_table",
    "read_results",
    "rejection",
    "render_html",
    "render_markdown",
    "rerender_report",
    "score_classification",
    "score_embedding",
    "score_perplexity",
    "throughput",
    "unmeasured_speed",
    "verdicts",
    "within_noise",
    "write_report",
]
