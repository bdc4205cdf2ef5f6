"""Greedy outputs of the engine equal Hugging Face `generate(do_sample=False)` token for token: alone, batched
with staggered arrivals, with prefix hits, with chunked prefill, under preemption, with tied embeddings."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from infopt.serve.engine import EngineConfig, LLMEngine, SamplingParams, ScheduledSeq
from infopt.serve.engine._weights import DenseWeight
from infopt.serve.engine.scheduler import SchedulerOutput

N = 20
GREEDY = SamplingParams(max_tokens=N)
SMALL = dict(kv_cache_mb=1.0, max_num_seqs=16, max_tokens_per_step=256, prefill_chunk=64)


def _run_staggered(engine: LLMEngine, prompts: list[list[int]], per_step: int = 1) -> dict[str, list[int]]:
    """Add `per_step` requests per step while stepping; the tokens of each request."""
    out: dict[str, list[int]] = {}
    pending = list(enumerate(prompts))
    while pending or engine.has_unfinished():
        for i, prompt in pending[:per_step]:
            engine.add_request(f"r{i}", prompt, GREEDY)
        pending = pending[per_step:]
        for o in engine.step():
            out.setdefault(o.request_id, []).extend(o.new_token_ids)
    return out


def test_runner_logits_match_hugging_face(model: Any, helpers: Any) -> None:
    engine = LLMEngine(model, EngineConfig(**SMALL))
    prompt = helpers.make_prompts(1, 30, 31)[0]
    engine.kv.allocate("a", len(prompt))
    seq = ScheduledSeq("a", prompt, 0, engine.kv.block_table("a"), len(prompt))
    ours = engine.runner.execute(SchedulerOutput([seq]))
    with torch.no_grad():
        theirs = model(torch.tensor([prompt])).logits[0]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_a_chunk_after_cached_tokens_matches_hugging_face(model: Any, helpers: Any) -> None:
    engine = LLMEngine(model, EngineConfig(**SMALL, block_size=8))
    prompt = helpers.make_prompts(1, 40, 41, seed=2)[0]
    engine.kv.allocate("a", 40)
    table = engine.kv.block_table("a")
    engine.runner.execute(SchedulerOutput([ScheduledSeq("a", prompt[:17], 0, table, 0)]))
    ours = engine.runner.execute(SchedulerOutput([ScheduledSeq("a", prompt[17:30], 17, table, 13)]))
    last = engine.runner.execute(SchedulerOutput([ScheduledSeq("a", prompt[30:31], 30, table, 1)]))
    with torch.no_grad():
        theirs = model(torch.tensor([prompt[:31]])).logits[0]
    torch.testing.assert_close(ours, theirs[17:30], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(last, theirs[30:31], atol=1e-4, rtol=1e-4)


def test_float32_weights_are_the_modules_own(model: Any) -> None:
    runner = LLMEngine(model, EngineConfig(**SMALL)).runner
    q = runner.layers[1].qkv[0]
    assert isinstance(q, DenseWeight) and len(runner.layers[1].qkv) == 3  # float32: not fused, not copied
    assert q.w.data_ptr() == model.model.layers[1].self_attn.q_proj.weight.data_ptr()
    assert isinstance(runner.lm_head, DenseWeight)
    assert runner.lm_head.w.data_ptr() == model.lm_head.weight.data_ptr()


def test_alone_equals_hf(model: Any, helpers: Any, reference: Any) -> None:
    for prompt in helpers.make_prompts(3):
        engine = LLMEngine(model, EngineConfig(**SMALL))
        assert engine.generate([prompt], GREEDY)[0] == reference(prompt, N)


def test_sixteen_staggered_requests_equal_hf(model: Any, helpers: Any, reference: Any) -> None:
    prompts = helpers.make_prompts(16)
    engine = LLMEngine(model, EngineConfig(**SMALL))
    out = _run_staggered(engine, prompts)
    assert [out[f"r{i}"] for i in range(16)] == [reference(p, N) for p in prompts]
    assert engine.stats.num_preemptions == 0 and engine.stats.num_free_blocks == engine.stats.num_blocks


def test_prefix_hits_give_the_same_output(model: Any, helpers: Any, reference: Any) -> None:
    shared = helpers.make_prompts(1, 40, 41, seed=7)[0]
    first, second = [*shared, 5, 6, 7], [*shared, 8, 9]
    engine = LLMEngine(model, EngineConfig(**SMALL, block_size=16))
    assert engine.generate([first], GREEDY)[0] == reference(first, N)
    assert engine.stats.prefix_hits == 0
    assert engine.generate([second], GREEDY)[0] == reference(second, N)
    assert engine.stats.prefix_hits == 32  # two full blocks of the 40-token prefix
    assert engine.stats.prefix_queries == len(first) + len(second)


def test_a_running_request_shares_its_prefix(model: Any, helpers: Any, reference: Any) -> None:
    shared = helpers.make_prompts(1, 40, 41, seed=7)[0]
    prompts = [[*shared, 1], [*shared, 2, 3], [*shared, 4, 5, 6]]
    engine = LLMEngine(model, EngineConfig(**SMALL, block_size=8))
    out = _run_staggered(engine, prompts)  # each arrives while the earlier ones decode
    assert [out[f"r{i}"] for i in range(3)] == [reference(p, N) for p in prompts]
    assert engine.stats.prefix_hits == 2 * 40


def test_chunked_prefill_equals_hf(model: Any, helpers: Any, reference: Any) -> None:
    prompts = helpers.make_prompts(8, 20, 90, seed=3)
    engine = LLMEngine(model, EngineConfig(**{**SMALL, "prefill_chunk": 7, "max_tokens_per_step": 24}))
    out = _run_staggered(engine, prompts, per_step=2)
    assert [out[f"r{i}"] for i in range(8)] == [reference(p, N) for p in prompts]


def test_running_requests_keep_decoding_while_a_long_prompt_prefills(model: Any, helpers: Any) -> None:
    short, long = helpers.make_prompts(2, 5, 6, seed=4)[0], helpers.make_prompts(1, 120, 121, seed=5)[0]
    engine = LLMEngine(model, EngineConfig(**{**SMALL, "prefill_chunk": 16}))
    engine.add_request("short", short, SamplingParams(max_tokens=30))
    engine.step()
    engine.add_request("long", long, SamplingParams(max_tokens=2))
    for _ in range(120 // 16):  # the long prompt takes 8 steps; the short request gets a token in each
        outs = {o.request_id: o for o in engine.step()}
        assert len(outs["short"].new_token_ids) == 1 and "long" not in outs
    assert "long" in {o.request_id for o in engine.step()}


def test_preemption_keeps_outputs_equal(model: Any, helpers: Any, reference: Any) -> None:
    prompts = helpers.make_prompts(8, 10, 40, seed=6)
    config = EngineConfig(block_size=4, kv_cache_mb=helpers.kv_mb(model, 40, 4), max_num_seqs=8,
                          max_tokens_per_step=128, prefill_chunk=32)
    engine = LLMEngine(model, config)
    assert engine.stats.num_blocks == 40
    out = _run_staggered(engine, prompts, per_step=8)
    assert engine.stats.num_preemptions > 0
    assert [out[f"r{i}"] for i in range(8)] == [reference(p, N) for p in prompts]
    assert engine.stats.num_free_blocks == 40


def test_preemption_without_prefix_caching(model: Any, helpers: Any, reference: Any) -> None:
    prompts = helpers.make_prompts(6, 10, 40, seed=8)
    config = EngineConfig(block_size=4, kv_cache_mb=helpers.kv_mb(model, 30, 4), max_num_seqs=6,
                          max_tokens_per_step=96, prefill_chunk=16, enable_prefix_caching=False)
    engine = LLMEngine(model, config)
    assert engine.generate(prompts, GREEDY) == [reference(p, N) for p in prompts]
    assert engine.stats.num_preemptions > 0 and engine.stats.prefix_hits == 0


@pytest.mark.parametrize("block_size", [1, 5, 32])
def test_odd_block_sizes(model: Any, helpers: Any, reference: Any, block_size: int) -> None:
    prompts = helpers.make_prompts(4, seed=9)
    engine = LLMEngine(model, EngineConfig(**SMALL, block_size=block_size))
    assert engine.generate(prompts, GREEDY) == [reference(p, N) for p in prompts]


def test_tied_embeddings_equal_hf(helpers: Any) -> None:
    tied = helpers.tiny_llama(tie_word_embeddings=True)
    prompts = helpers.make_prompts(3, seed=10)
    engine = LLMEngine(tied, EngineConfig(**SMALL))
    assert engine.runner.lm_head.w.data_ptr() == engine.runner.embed.data_ptr()  # type: ignore[attr-defined]
    assert engine.generate(prompts, GREEDY) == [helpers.hf_greedy(tied, p, N) for p in prompts]


def test_linear_rope_scaling_equals_hf(helpers: Any) -> None:
    scaled = helpers.tiny_llama(rope_scaling={"rope_type": "linear", "factor": 2.0})
    prompt = helpers.make_prompts(1, seed=11)[0]
    engine = LLMEngine(scaled, EngineConfig(**SMALL))
    assert engine.generate([prompt], GREEDY)[0] == helpers.hf_greedy(scaled, prompt, N)


def test_bfloat16_runs_close_to_float32(model: Any, helpers: Any) -> None:
    prompt = helpers.make_prompts(1, 30, 31, seed=12)[0]
    logits = []
    for dtype in ("float32", "bfloat16"):
        engine = LLMEngine(model, EngineConfig(**SMALL, dtype=dtype))
        assert engine.runner.kv_cache.dtype == getattr(torch, dtype)
        engine.kv.allocate("a", len(prompt))
        seq = ScheduledSeq("a", prompt, 0, engine.kv.block_table("a"), 1)
        logits.append(engine.runner.execute(SchedulerOutput([seq]))[0])
        assert len(engine.generate([prompt], GREEDY)[0]) == N
    assert torch.nn.functional.cosine_similarity(logits[0], logits[1], dim=0) > 0.99
