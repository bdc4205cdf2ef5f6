"""Sampling and stopping: seeded draws independent of the batch, Hugging Face's logits rules, stop tokens, eos,
stop strings, max_tokens, the model's length and logprobs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from infopt.errors import UserError
from infopt.serve.engine import EngineConfig, LLMEngine, SamplingParams, find_stop_string
from infopt.serve.engine.sampling import process_logits

CONFIG = EngineConfig(kv_cache_mb=1.0, max_num_seqs=16, max_tokens_per_step=256, prefill_chunk=64)
SEEDED = SamplingParams(max_tokens=20, temperature=0.9, top_k=40, top_p=0.9, seed=42)


def _collect(engine: LLMEngine) -> dict[str, Any]:
    tokens: dict[str, list[int]] = {}
    last: dict[str, Any] = {}
    while engine.has_unfinished():
        for o in engine.step():
            tokens.setdefault(o.request_id, []).extend(o.new_token_ids)
            last[o.request_id] = o
    return {"tokens": tokens, "last": last}


def test_a_seed_gives_the_same_tokens_alone_and_in_a_batch(model: Any, helpers: Any) -> None:
    prompt, *others = helpers.make_prompts(9, seed=20)
    alone = LLMEngine(model, CONFIG).generate([prompt], SEEDED)[0]
    engine = LLMEngine(model, CONFIG)
    for i, other in enumerate(others):
        params = [SamplingParams(max_tokens=25), SamplingParams(max_tokens=15, temperature=1.0),
                  SamplingParams(max_tokens=30, temperature=0.7, seed=i)][i % 3]
        engine.add_request(f"o{i}", other, params)
    engine.step()
    engine.step()
    engine.add_request("seeded", prompt, SEEDED)  # arrives late, into a running batch
    assert _collect(engine)["tokens"]["seeded"] == alone
    other_seed = LLMEngine(model, CONFIG).generate([prompt], SamplingParams(**{**SEEDED.__dict__, "seed": 43}))[0]
    assert other_seed != alone


def test_top_k_one_is_greedy(model: Any, helpers: Any, reference: Any) -> None:
    prompt = helpers.make_prompts(1, seed=21)[0]
    out = LLMEngine(model, CONFIG).generate([prompt], SamplingParams(max_tokens=20, temperature=1.5, top_k=1))
    assert out[0] == reference(prompt, 20)


def test_logits_rules_match_hugging_face() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, generator=g) * 3
    history = [3, 7, 7, 100, 250]
    params = SamplingParams(temperature=0.7, top_k=50, top_p=0.8, repetition_penalty=1.3)
    ids = torch.tensor([history])
    expected = RepetitionPenaltyLogitsProcessor(1.3)(ids, logits[None].clone())
    for warper in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(50), TopPLogitsWarper(0.8)):
        expected = warper(ids, expected)
    ours = process_logits(logits, params, history)
    assert torch.equal(torch.isinf(ours), torch.isinf(expected[0]))
    keep = ~torch.isinf(ours)
    torch.testing.assert_close(ours[keep], expected[0][keep])


def test_greedy_repetition_penalty_equals_hf(model: Any, helpers: Any) -> None:
    prompt = helpers.make_prompts(1, seed=22)[0]
    ids = torch.tensor([prompt])
    with torch.no_grad():
        expected = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                                  repetition_penalty=1.3, pad_token_id=0)[0, len(prompt):].tolist()
    out = LLMEngine(model, CONFIG).generate([prompt], SamplingParams(max_tokens=20, repetition_penalty=1.3))
    assert out[0] == expected


def test_stop_token_ids_end_the_request_and_are_kept(model: Any, helpers: Any, reference: Any) -> None:
    prompt = helpers.make_prompts(1, seed=23)[0]
    ref = reference(prompt, 20)
    stop = ref[5]
    engine = LLMEngine(model, CONFIG)
    engine.add_request("a", prompt, SamplingParams(max_tokens=20, stop_token_ids=(stop,)))
    got = _collect(engine)
    assert got["tokens"]["a"] == ref[:ref.index(stop) + 1]
    last = got["last"]["a"]
    assert last.finished and last.finish_reason == "stop" and last.stop_reason == stop


def test_max_tokens_and_the_model_length(model: Any, helpers: Any) -> None:
    prompt = helpers.make_prompts(1, 30, 31, seed=24)[0]
    engine = LLMEngine(model, EngineConfig(kv_cache_mb=1.0, max_model_len=40))
    engine.add_request("a", prompt, SamplingParams(max_tokens=7))
    engine.add_request("b", prompt, SamplingParams(max_tokens=30))
    got = _collect(engine)
    assert len(got["tokens"]["a"]) == 7 and got["last"]["a"].finish_reason == "length"
    assert len(got["tokens"]["b"]) == 10 and got["last"]["b"].finish_reason == "length"


def test_eos_from_the_model_config_like_hf(helpers: Any) -> None:
    probe = helpers.tiny_llama()
    prompt = helpers.make_prompts(1, seed=25)[0]
    eos = helpers.hf_greedy(probe, prompt, 20)[8]
    with_eos = helpers.tiny_llama(eos_token_id=eos)
    expected = helpers.hf_greedy(with_eos, prompt, 20)
    assert expected[-1] == eos and len(expected) <= 9
    engine = LLMEngine(with_eos, CONFIG)
    assert engine.generate([prompt], SamplingParams(max_tokens=20))[0] == expected
    assert len(engine.generate([prompt], SamplingParams(max_tokens=20, ignore_eos=True))[0]) == 20


def test_stop_strings_through_the_decode_callback(model: Any, helpers: Any, reference: Any) -> None:
    def decode(ids: list[int]) -> str:
        return "".join(f"<{t}>" for t in ids)

    prompt = helpers.make_prompts(1, seed=26)[0]
    ref = reference(prompt, 20)
    stop = f"<{ref[3]}><{ref[4]}>"
    end = next(j for j in range(1, 20) if (ref[j - 1], ref[j]) == (ref[3], ref[4]))
    engine = LLMEngine(model, CONFIG, decode=decode)
    engine.add_request("a", prompt, SamplingParams(max_tokens=20, stop=(stop,)))
    got = _collect(engine)
    assert got["tokens"]["a"] == ref[:end + 1]
    assert got["last"]["a"].finish_reason == "stop" and got["last"]["a"].stop_reason == stop


def test_find_stop_string_sees_only_completed_stops() -> None:
    def decode(ids: list[int]) -> str:
        return "".join(chr(ord("a") + t) for t in ids)

    assert find_stop_string(decode, [0, 1, 2], ["bc"]) == "bc"
    assert find_stop_string(decode, [0, 1, 2, 3], ["bc"]) is None  # completed a token earlier
    assert find_stop_string(decode, [0, 1], ["bc", "ab"]) == "ab"
    assert find_stop_string(decode, [], ["x"]) is None


def test_logprobs_are_those_of_the_model(model: Any, helpers: Any) -> None:
    prompt = helpers.make_prompts(1, seed=27)[0]
    engine = LLMEngine(model, CONFIG)
    engine.add_request("a", prompt, SamplingParams(max_tokens=8, temperature=0.8, seed=1, logprobs=True))
    logprobs: list[float] = []
    tokens: list[int] = []
    while engine.has_unfinished():
        for o in engine.step():
            tokens += o.new_token_ids
            assert o.new_logprobs is not None and len(o.new_logprobs) == len(o.new_token_ids)
            logprobs += o.new_logprobs
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1:-1]
    expected = logits.log_softmax(-1).gather(1, torch.tensor(tokens)[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(logprobs), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("field, value", [("max_tokens", 0), ("temperature", -1), ("top_p", 0), ("top_k", -1),
                                          ("repetition_penalty", 0), ("seed", -3), ("stop", ("",)),
                                          ("stop_token_ids", (-1,)), ("logprobs", 1)])
def test_bad_sampling_params_are_user_errors(field: str, value: object) -> None:
    with pytest.raises(UserError, match=f"SamplingParams.{field}"):
        SamplingParams(**{field: value})  # type: ignore[arg-type]
