"""The engine on the real SmolLM2-135M-Instruct (slow: loads smollm2-135m): greedy chat answers equal Hugging Face
`generate` for 32 tokens, alone and three in a batch with a shared system-prompt prefix."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from infopt.serve.engine import EngineConfig, LLMEngine, SamplingParams

QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.", "Name three primary colors."]


@pytest.fixture(scope="module")
def smollm2() -> Any:
    from infopt.models import load_model

    return load_model("smollm2-135m")


def _chat(tokenizer: Any, question: str) -> list[int]:
    messages = [{"role": "user", "content": question}]
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))


def _hf(model: Any, prompt: list[int], n: int) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    return [int(t) for t in out[0, len(prompt):]]


@pytest.mark.slow
def test_smollm2_greedy_equals_hf(smollm2: Any) -> None:
    model, tokenizer = smollm2.model, smollm2.tokenizer
    assert model.config.tie_word_embeddings and model.config.num_key_value_heads == 3
    prompts = [_chat(tokenizer, q) for q in QUESTIONS]
    expected = [_hf(model, p, 32) for p in prompts]
    engine = LLMEngine(model, EngineConfig(kv_cache_mb=64, max_num_seqs=4, prefill_chunk=32))
    assert engine.generate(prompts[:1], SamplingParams(max_tokens=32)) == expected[:1]
    assert "Paris" in tokenizer.decode(expected[0])
    assert engine.generate(prompts, SamplingParams(max_tokens=32)) == expected
    assert engine.stats.prefix_hits > 0  # the chat template's system prompt is shared
