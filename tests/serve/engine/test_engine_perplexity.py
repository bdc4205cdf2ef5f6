"""Perplexity through the engine's runner: equal to Hugging Face's on float32, close on int8, and (slow) within 5%
of float32 on the real SmolLM2-135M with int8 weights."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from infopt.serve.engine._perplexity import runner_perplexity, text_blocks


def _hf_perplexity(model: Any, blocks: list[list[int]]) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for ids in blocks:
            logits = model(torch.tensor([ids])).logits[0, :-1]
            total += float(F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum"))
            count += len(ids) - 1
    return math.exp(total / count)


def test_runner_perplexity_equals_hugging_face(model: Any, helpers: Any) -> None:
    blocks = helpers.make_prompts(3, 40, 50, seed=50)
    ours = runner_perplexity(model, blocks)
    assert ours == pytest.approx(_hf_perplexity(model, blocks), rel=1e-4)
    int8 = runner_perplexity(model, blocks, "int8", "bfloat16")
    assert int8 != ours and int8 == pytest.approx(ours, rel=0.05)
    assert runner_perplexity(model, blocks, "auto") > 0


def test_text_blocks_are_fixed(tokenizer: Any) -> None:
    blocks = text_blocks(tokenizer, count=2, block=32)
    assert len(blocks) == 2 and all(len(b) == 32 for b in blocks)
    assert blocks == text_blocks(tokenizer, count=2, block=32)


@pytest.mark.slow
def test_smollm2_int8_perplexity_within_five_percent() -> None:
    from infopt.models import load_model

    loaded = load_model("smollm2-135m")
    blocks = text_blocks(loaded.tokenizer, count=3, block=256)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: a busy neighbour core does not stall it at every barrier
    try:
        base = runner_perplexity(loaded.model, blocks)
        int8 = runner_perplexity(loaded.model, blocks, "int8", "bfloat16")
    finally:
        torch.set_num_threads(before)
    assert 1.0 < base < 100.0  # news text: measured about 20 (fp32)
    assert int8 / base < 1.05
