"""Fixtures of the engine tests: a tiny random-init Llama (2 layers, hidden 64, 4 heads / 2 KV heads, vocab 300),
seeded prompts and Hugging Face `generate` as the reference."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 300


def tiny_llama(**overrides: Any) -> LlamaForCausalLM:
    """A seeded tiny LlamaForCausalLM; untied embeddings and a wide init keep greedy outputs varied (and far
    from ties), and no end-of-sequence token, so generations run to max_tokens unless a test says otherwise."""
    fields: dict[str, Any] = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, initializer_range=0.1,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    fields.update(overrides)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(**fields)).eval()


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models on one torch thread (hand-offs between threads cost more than the work here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model() -> LlamaForCausalLM:
    """The tiny Llama shared by the engine tests (read only)."""
    return tiny_llama()


def make_prompts(n: int, low: int = 3, high: int = 60, seed: int = 1) -> list[list[int]]:
    """`n` seeded random prompts of `low` to `high` tokens."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high, (n,), generator=g).tolist()
    return [torch.randint(0, VOCAB, (k,), generator=g).tolist() for k in lengths]


def hf_greedy(model: LlamaForCausalLM, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Hugging Face `generate(do_sample=False)` of one prompt: the new tokens."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=0)
    return [int(t) for t in out[0, len(prompt):]]


@pytest.fixture(scope="session")
def reference(model: LlamaForCausalLM) -> Callable[[list[int], int], list[int]]:
    """`reference(prompt, n)`: HF greedy tokens of the shared tiny model, memoized."""
    memo: dict[tuple[tuple[int, ...], int], list[int]] = {}

    def ref(prompt: list[int], n: int) -> list[int]:
        key = (tuple(prompt), n)
        if key not in memo:
            memo[key] = hf_greedy(model, prompt, n)
        return memo[key]

    return ref


def kv_mb(model: LlamaForCausalLM, blocks: int, block_size: int) -> float:
    """The `kv_cache_mb` of a pool of exactly `blocks` blocks (fp32)."""
    c: Any = model.config
    per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * 4
    return blocks * block_size * per_token / 2**20


@pytest.fixture(scope="session")
def helpers() -> Any:
    """The module's helpers as attributes: `tiny_llama`, `make_prompts`, `hf_greedy`, `kv_mb`, `VOCAB`."""
    return types.SimpleNamespace(tiny_llama=tiny_llama, make_prompts=make_prompts, hf_greedy=hf_greedy,
                                 kv_mb=kv_mb, VOCAB=VOCAB)
