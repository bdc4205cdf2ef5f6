"""Measure a saved variant: quality, speed, size and memory, each variant in a fresh process."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import resource
from dataclasses import dataclass, field
from pathlib import Path

import torch

from infopt._config import check_number
from infopt.errors import UserError
from infopt.evaluate._quality import Scored, batch_flips, score_classification, score_embedding, score_perplexity
from infopt.evaluate._results import VariantResult
from infopt.evaluate._speed import measure_speed, unmeasured_speed
from infopt.evaluate._stats import compare, rejection
from infopt.models import LoadedModel, load_model, weights_mb

__all__ = ["BenchConfig", "EvalSpec", "measure", "measure_variant"]


@dataclass(frozen=True)
class BenchConfig:
    """How variants are timed."""

    threads: int | None = None
    """torch / ONNX Runtime intra-op threads; None keeps torch's default (the physical cores)."""
    batch_size: int = 32
    """Batch size of the throughput measurement."""
    isolate: bool = True
    """Measure each variant in a fresh process, so its peak RSS is its own."""

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UserError(f"threads={self.threads} is invalid.", "use --threads 1 or more.")
        if self.batch_size < 1:
            raise UserError(f"batch_size={self.batch_size} is invalid.", "use a batch size of 1 or more.")


@dataclass
class EvalSpec:
    """What a variant is evaluated on; which fields are used depends on the task."""

    task: str
    texts: list[str]
    """classification: test texts; embedding: texts to embed; causal-lm: held-out corpus."""
    labels: list[int] = field(default_factory=list)
    reference: torch.Tensor | None = None
    """embedding: the parent's [N, D] embeddings of `texts`."""
    speed_texts: list[str] = field(default_factory=list)
    """Texts cycled through in the latency and throughput runs."""
    prompt: str | None = None
    """causal-lm: the prompt of the decode-speed run."""
    max_tokens: int = 8192
    """causal-lm: tokens scored for perplexity."""
    baseline_predictions: list[int] | None = None
    """classification: the baseline's prediction of each text, for flips and the paired interval (None: none)."""
    reject_below: float | None = None
    """classification with baseline predictions: the allowed accuracy drop in points; a variant whose paired
    interval lies wholly below -reject_below is not timed (early rejection). None: always timed."""

    def __post_init__(self) -> None:
        check_number(self, "reject_below", low=0, optional=True, example=1.0)
        if self.baseline_predictions is not None:
            if self.task != "classification":
                raise ValueError(f"baseline_predictions are for classification, not {self.task}")
            if len(self.baseline_predictions) != len(self.texts):
                raise ValueError(f"{len(self.baseline_predictions)} baseline predictions for {len(self.texts)} texts")


def _score(model: LoadedModel, spec: EvalSpec) -> Scored:
    if spec.task == "classification":
        from infopt.data import TextDataset

        return score_classification(model, TextDataset("test", spec.texts, spec.labels))
    if spec.task == "embedding":
        if spec.reference is None:
            raise ValueError("an embedding EvalSpec needs the parent's reference embeddings")
        return score_embedding(model, spec.texts, spec.reference)
    return score_perplexity(model, spec.texts, max_tokens=spec.max_tokens)


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, since ru_maxrss of a spawned child includes its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(model: LoadedModel, spec: EvalSpec, bench: BenchConfig, path: Path | None = None) -> VariantResult:
    """Measure an already loaded variant in this process: quality first, then (unless it is rejected early
    against `spec.baseline_predictions` and `spec.reject_below`) speed."""
    if bench.threads:
        torch.set_num_threads(bench.threads)
    scored = _score(model, spec)
    flips, delta_ci, notes, reason = None, None, [], None
    if spec.baseline_predictions is not None:
        comparison = compare(scored.predictions, spec.baseline_predictions, spec.labels)
        flips, delta_ci = comparison.flips, comparison.delta_ci
        if spec.reject_below is not None:
            reason = rejection(comparison, spec.reject_below)
    if reason:
        speed = unmeasured_speed(bench.batch_size)
        notes.append(f"rejected early: {reason}; speed not measured")
    else:
        speed = measure_speed(model, spec.speed_texts or spec.texts[:64], bench.batch_size, spec.prompt)
    alone = batch_flips(model, spec.texts, scored.predictions) if scored.predictions and not reason else None
    size = weights_mb(path) if path else 0.0
    m = model.manifest
    return VariantResult(
        name=m.name,
        method=m.method,
        task=m.task,
        quality=scored.quality,
        speed=speed,
        size_mb=size,
        peak_rss_mb=_peak_rss_mb(),
        params=model.num_parameters(),
        path=str(path or ""),
        fingerprint=m.fingerprint,
        notes=notes,
        n_eval=scored.n_eval,
        quality_ci=scored.quality_ci,
        predictions=scored.predictions,
        flips=flips,
        delta_ci=delta_ci,
        batch_flips=alone,
    )


def _load_and_measure(path: str, spec: EvalSpec, bench: BenchConfig) -> VariantResult:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if bench.threads:
        torch.set_num_threads(bench.threads)
    return measure(load_model(path), spec, bench, Path(path))


def _context() -> mp.context.BaseContext:
    """A fork server that has imported torch, transformers and ONNX Runtime once: each measuring process forks from
    it instead of importing them again (about 10 s per variant on 2 cores); spawn where there is no fork server."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, "onnxruntime"])
    return ctx


def measure_variant(path: str | Path, spec: EvalSpec, bench: BenchConfig = BenchConfig()) -> VariantResult:
    """Load the saved variant at `path` (in a fresh process if `bench.isolate`) and measure it."""
    if not bench.isolate:
        return _load_and_measure(str(path), spec, bench)
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=_context()) as pool:
        try:
            return pool.submit(_load_and_measure, str(path), spec, bench).result()
        except BaseException:  # interrupted (SIGINT / SIGTERM): do not wait for the measuring process, kill it
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            raise
