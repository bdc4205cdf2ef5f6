"""Speculative decoding by prompt lookup: greedy outputs equal the target's alone; drafts get accepted."""

from __future__ import annotations

from typing import Any

from infopt.serve.engine import EngineConfig, LLMEngine, SamplingParams, accept_greedy, propose_ngram

N = 24
SPEC = dict(kv_cache_mb=1.0, max_num_seqs=8, max_tokens_per_step=128, prefill_chunk=32, speculative_tokens=4)


def test_propose_ngram_takes_the_latest_earlier_match() -> None:
    assert propose_ngram([1, 2, 3, 9, 1, 2, 3, 7, 8, 1, 2, 3], [3], 2) == [7, 8]
    assert propose_ngram([1, 2, 3, 9, 1, 2, 3], [3], 5) == [9, 1, 2, 3]
    assert propose_ngram([5, 6, 4, 6], [2, 1], 3) == [4, 6]  # no 2-gram match: the 1-gram [6]
    assert propose_ngram([1, 2, 3], [2], 3) == [] and propose_ngram([1, 1], [1], 0) == []


def test_accept_greedy_keeps_the_agreeing_drafts_and_one_more() -> None:
    assert accept_greedy([5, 6, 7], [5, 6, 7, 8]) == [5, 6, 7, 8]
    assert accept_greedy([5, 6, 7], [5, 9, 7, 8]) == [5, 9]
    assert accept_greedy([5], [4, 0]) == [4]
    assert accept_greedy([], [3]) == [3]


def _repetitive(helpers: Any, n: int, seed: int) -> list[list[int]]:
    return [p[:12] * 3 + p[12:16] for p in helpers.make_prompts(n, 16, 30, seed=seed)]


def test_speculation_keeps_greedy_outputs_equal(model: Any, helpers: Any, reference: Any) -> None:
    prompts = _repetitive(helpers, 6, seed=40)
    engine = LLMEngine(model, EngineConfig(**SPEC))
    out = engine.generate(prompts, SamplingParams(max_tokens=N))
    assert out == [reference(p, N) for p in prompts]
    stats = engine.stats
    assert stats.num_draft_tokens > 0 and stats.num_accepted_tokens > 0 and 0 < stats.accept_rate <= 1
    alone = LLMEngine(model, EngineConfig(**{**SPEC, "prefill_chunk": 64}))  # the prompt in one step
    assert alone.generate([prompts[0]], SamplingParams(max_tokens=N)) == [reference(prompts[0], N)]
    assert alone.stats.num_accepted_tokens > 0
    assert alone.stats.num_steps == N - alone.stats.num_accepted_tokens  # each accepted draft saves a step


def test_speculation_with_sampled_requests_and_preemption(model: Any, helpers: Any, reference: Any) -> None:
    prompts = _repetitive(helpers, 6, seed=41)
    seeded = SamplingParams(max_tokens=N, temperature=0.8, seed=5)
    alone = LLMEngine(model, EngineConfig(**SPEC)).generate([prompts[0]], seeded)[0]
    config = EngineConfig(**{**SPEC, "block_size": 4, "kv_cache_mb": helpers.kv_mb(model, 48, 4)})
    engine = LLMEngine(model, config)
    params = [seeded] + [SamplingParams(max_tokens=N)] * 5
    out = engine.generate(prompts, params)
    assert engine.stats.num_preemptions > 0
    assert out[0] == alone
    assert out[1:] == [reference(p, N) for p in prompts[1:]]


def test_speculation_stops_at_max_tokens_and_stop_tokens(model: Any, helpers: Any, reference: Any) -> None:
    prompt = _repetitive(helpers, 1, seed=42)[0]
    ref = reference(prompt, N)
    engine = LLMEngine(model, EngineConfig(**SPEC))
    assert engine.generate([prompt], SamplingParams(max_tokens=7)) == [ref[:7]]
    stop = ref[10]
    out = engine.generate([prompt], SamplingParams(max_tokens=N, stop_token_ids=(stop,)))[0]
    assert out == ref[:ref.index(stop) + 1]
