"""The `[engine]` table of a server: the paged engine (see infopt.serve.engine) of its Llama-family causal LMs.

    [engine]
    max_num_seqs = 8                # sequences decoded together in one step
    kv_cache_mb = 256               # the KV pool of each model (capped at what it can use)
    enable_prefix_caching = true
    weights = "auto"                # linear weights: float32, bfloat16, int8, int4, auto (by the CPU's flags)
    dtype = "bfloat16"              # activations and KV cache (int8 / int4 weights want bfloat16)
"""

from __future__ import annotations

import dataclasses

from infopt._config import check_bool
from infopt.serve.engine import EngineConfig

__all__ = ["ServeEngineConfig"]


@dataclasses.dataclass(frozen=True)
class ServeEngineConfig(EngineConfig):
    """The engine's own config with defaults for a small CPU, plus `enabled`; models the engine does not run
    (other families, wrapped modules, linear layers other than nn.Linear and infopt's weight-only int8 / int4)
    use the plain one-at-a-time loop."""

    kv_cache_mb: float = 256.0
    """The KV pool of each engine-backed model in MiB, K and V of all layers (capped at what max_num_seqs
    sequences of the full context can use, twice over: the rest serves the prefix cache)."""
    max_num_seqs: int = 8
    """Most sequences running (decoding or prefilling) at once; more requests wait in the engine."""
    max_tokens_per_step: int = 256
    """Token budget of one step: decode tokens and prefill chunks together (bounds the pause a long prompt
    causes to the streams already running)."""
    prefill_chunk: int = 128
    """Most prompt tokens of one sequence prefilled in one step (longer prompts take several steps)."""
    enabled: bool = True
    """Serve Llama-family causal LMs on the paged engine (continuous batching, prefix caching, n > 1 and
    logprobs); false: every causal LM on the plain loop, one generation at a time."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bool(self, "enabled")
