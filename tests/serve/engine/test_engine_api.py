"""The engine's API around generation: abort, stats, bad requests and configs, unsupported models."""

from __future__ import annotations

from typing import Any

import pytest

from infopt.errors import NotApplicable, UserError
from infopt.serve.engine import EngineConfig, LLMEngine, SamplingParams

CONFIG = EngineConfig(block_size=4, kv_cache_mb=1.0, max_num_seqs=8, max_tokens_per_step=128, prefill_chunk=32)


def test_abort_frees_blocks_and_ends_the_request(model: Any, helpers: Any) -> None:
    engine = LLMEngine(model, CONFIG)
    prompts = helpers.make_prompts(3, 20, 30, seed=30)
    for i, p in enumerate(prompts):
        engine.add_request(f"r{i}", p, SamplingParams(max_tokens=30))
    engine.step()
    engine.step()
    held = engine.kv.block_table("r1")
    free_before = engine.stats.num_free_blocks
    assert held and engine.stats.num_running == 3
    assert engine.abort("r1")
    assert engine.stats.num_free_blocks == free_before + len(held) and engine.stats.num_running == 2
    assert not engine.abort("r1") and not engine.abort("nobody")
    seen: set[str] = set()
    while engine.has_unfinished():
        seen |= {o.request_id for o in engine.step()}
    assert seen == {"r0", "r2"}
    assert engine.stats.num_free_blocks == engine.stats.num_blocks


def test_abort_a_waiting_request(model: Any, helpers: Any) -> None:
    engine = LLMEngine(model, EngineConfig(**{**CONFIG.__dict__, "max_num_seqs": 1}))
    a, b = helpers.make_prompts(2, seed=31)
    engine.add_request("a", a, SamplingParams(max_tokens=5))
    engine.add_request("b", b, SamplingParams(max_tokens=5))
    engine.step()
    assert (engine.stats.num_running, engine.stats.num_waiting) == (1, 1)
    assert engine.abort("b") and engine.stats.num_waiting == 0
    assert engine.generate([b], SamplingParams(max_tokens=3)) and not engine.has_unfinished()


def test_stats_and_ids_can_be_reused_after_finishing(model: Any, helpers: Any) -> None:
    engine = LLMEngine(model, CONFIG)
    prompt = helpers.make_prompts(1, seed=32)[0]
    engine.add_request("x", prompt, SamplingParams(max_tokens=3))
    with pytest.raises(UserError, match="already running"):
        engine.add_request("x", prompt)
    while engine.has_unfinished():
        engine.step()
    engine.add_request("x", prompt, SamplingParams(max_tokens=3))
    stats = engine.stats
    assert stats.num_waiting == 1 and stats.num_steps == 3 and 0 <= stats.kv_usage < 1
    assert 0 <= stats.prefix_hit_rate <= 1 and stats.accept_rate == 0


@pytest.mark.parametrize("prompt, match", [([], "token ids"), ([1, 300], "token ids"), (["a"], "token ids"),
                                           (list(range(256)), "tokens")])
def test_bad_prompts_are_user_errors(model: Any, prompt: list[Any], match: str) -> None:
    with pytest.raises(UserError, match=match):
        LLMEngine(model, CONFIG).add_request("a", prompt)


def test_requests_larger_than_the_pool_are_refused(model: Any, helpers: Any) -> None:
    engine = LLMEngine(model, EngineConfig(block_size=4, kv_cache_mb=helpers.kv_mb(model, 5, 4)))
    with pytest.raises(UserError, match="KV blocks"):
        engine.add_request("a", list(range(10)), SamplingParams(max_tokens=20))
    engine.add_request("b", list(range(10)), SamplingParams(max_tokens=10))


def test_stop_strings_need_decode(model: Any) -> None:
    with pytest.raises(UserError, match="decode"):
        LLMEngine(model, CONFIG).add_request("a", [1, 2], SamplingParams(stop=("x",)))


def test_generate_checks_its_params(model: Any) -> None:
    with pytest.raises(UserError, match="one per prompt"):
        LLMEngine(model, CONFIG).generate([[1], [2]], [SamplingParams()])


@pytest.mark.parametrize("field, value", [("block_size", 0), ("kv_cache_mb", 0), ("dtype", "float16"),
                                          ("max_num_seqs", 0), ("prefill_chunk", 0), ("max_model_len", 1),
                                          ("speculative_tokens", -1), ("ngram_sizes", ()),
                                          ("enable_prefix_caching", 1)])
def test_bad_engine_configs_are_user_errors(field: str, value: object) -> None:
    with pytest.raises(UserError, match=f"EngineConfig.{field}"):
        EngineConfig(**{field: value})  # type: ignore[arg-type]


def test_the_step_budget_must_fit_a_decode_of_every_sequence() -> None:
    with pytest.raises(UserError, match="max_tokens_per_step"):
        EngineConfig(max_num_seqs=16, max_tokens_per_step=32, speculative_tokens=4)


def test_max_model_len_beyond_the_model_is_refused(model: Any) -> None:
    with pytest.raises(UserError, match="max_model_len"):
        LLMEngine(model, EngineConfig(kv_cache_mb=1.0, max_model_len=1000))


def test_unsupported_rope_scaling_is_named(helpers: Any) -> None:
    dynamic = helpers.tiny_llama(rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    with pytest.raises(NotApplicable, match="'dynamic'"):
        LLMEngine(dynamic, CONFIG)


def test_other_families_are_not_applicable(helpers: Any) -> None:
    biased = helpers.tiny_llama(attention_bias=True)
    with pytest.raises(NotApplicable, match="no biases"):
        LLMEngine(biased, CONFIG)
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32))
    with pytest.raises(NotApplicable, match="Llama-family"):
        LLMEngine(gpt2, CONFIG)
