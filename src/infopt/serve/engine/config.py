"""The engine's two configs: `EngineConfig` (memory, batching, speculation) and `SamplingParams` (one request)."""

from __future__ import annotations

import dataclasses

from infopt._config import check_bool, check_choice, check_int, check_number, field_error, int_tuple

__all__ = ["EngineConfig", "SamplingParams"]


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """How the engine spends memory and compute: the KV pool, the batch per step, prefill chunks, speculation."""

    block_size: int = 16
    """Tokens per KV-cache block (the unit of allocation and of prefix caching)."""
    kv_cache_mb: float = 256.0
    """Size of the KV pool of all layers together, in MiB (K and V)."""
    max_num_seqs: int = 16
    """Most sequences running (decoding or prefilling) at once."""
    max_tokens_per_step: int = 512
    """Token budget of one step: decode tokens, draft tokens and prefill chunks together."""
    prefill_chunk: int = 256
    """Most prompt tokens of one sequence prefilled in one step (longer prompts take several steps)."""
    enable_prefix_caching: bool = True
    """Reuse the cached KV blocks of a prompt prefix seen before."""
    dtype: str = "float32"
    """Activations, KV cache and norms: "float32" or "bfloat16" (int8 / int4 weights run fastest with bfloat16)."""
    weights: str = "float32"
    """Linear weights: "float32", "bfloat16", "int8", "int4" (weight-only, lm_head int8) or "auto" (by CPU flags)."""
    max_model_len: int | None = None
    """Most tokens (prompt + output) of one sequence; None: the model's max_position_embeddings."""
    speculative_tokens: int = 0
    """Draft tokens proposed per step by prompt lookup (n-gram) for greedy requests; 0 turns speculation off."""
    ngram_sizes: tuple[int, ...] = (3, 2)
    """Lengths of the suffix n-gram searched for in the sequence, tried in this order."""
    seed: int = 0
    """Seed of the generator of sampled requests that bring no seed of their own."""

    def __post_init__(self) -> None:
        check_int(self, "block_size", min=1)
        check_number(self, "kv_cache_mb", low=0, bounds="(]", example=256)
        check_int(self, "max_num_seqs", min=1)
        check_int(self, "max_tokens_per_step", min=1)
        check_int(self, "prefill_chunk", min=1)
        check_bool(self, "enable_prefix_caching")
        check_choice(self, "dtype", ("float32", "bfloat16"))
        check_choice(self, "weights", ("float32", "bfloat16", "int8", "int4", "auto"))
        check_int(self, "max_model_len", min=2, optional=True)
        check_int(self, "speculative_tokens", min=0)
        int_tuple(self, "ngram_sizes", min=1, distinct=True)
        check_int(self, "seed", min=0)
        if self.max_tokens_per_step < self.max_num_seqs * (1 + self.speculative_tokens):
            raise field_error(self, "max_tokens_per_step", self.max_tokens_per_step,
                              f"at least max_num_seqs * (1 + speculative_tokens) = "
                              f"{self.max_num_seqs * (1 + self.speculative_tokens)}")


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How one request picks its tokens and when it stops; `temperature` 0 is greedy."""

    max_tokens: int = 16
    """Most new tokens."""
    temperature: float = 0.0
    """Softmax temperature; 0 picks the most likely token (greedy)."""
    top_k: int = 0
    """Sample among the k most likely tokens only; 0 keeps all."""
    top_p: float = 1.0
    """Sample within the smallest set of tokens whose probability reaches top_p; 1 keeps all."""
    repetition_penalty: float = 1.0
    """Divide (multiply, when negative) the logits of tokens already seen by this; 1 is off (Hugging Face's rule)."""
    seed: int | None = None
    """Seed of this request's own generator: the same seed gives the same tokens whatever else runs."""
    stop_token_ids: tuple[int, ...] = ()
    """Token ids that end the request (kept in the output), besides the model's end-of-sequence ids."""
    ignore_eos: bool = False
    """Keep generating past the model's end-of-sequence ids."""
    stop: tuple[str, ...] = ()
    """Strings that end the request; needs the engine's `decode` callback (the engine itself sees token ids only)."""
    logprobs: bool = False
    """Return the log-probability of each chosen token (under the model's raw distribution)."""

    def __post_init__(self) -> None:
        check_int(self, "max_tokens", min=1)
        check_number(self, "temperature", low=0, high=100, example=0.7)
        check_int(self, "top_k", min=0)
        check_number(self, "top_p", low=0, high=1, bounds="(]", example=0.9)
        check_number(self, "repetition_penalty", low=0, high=100, bounds="(]", example=1.1)
        check_int(self, "seed", min=0, optional=True)
        stops = self.stop_token_ids
        if isinstance(stops, list | tuple) and not stops:
            object.__setattr__(self, "stop_token_ids", ())
        else:
            int_tuple(self, "stop_token_ids", min=0)
        check_bool(self, "ignore_eos")
        stop = tuple(self.stop) if isinstance(self.stop, list | tuple) else self.stop
        if not isinstance(stop, tuple) or not all(isinstance(s, str) and s for s in stop):
            raise field_error(self, "stop", self.stop, "a list of non-empty strings")
        object.__setattr__(self, "stop", stop)
        check_bool(self, "logprobs")

    @property
    def greedy(self) -> bool:
        """Whether the request takes the most likely token each step."""
        return self.temperature == 0
