"""A generation engine for Llama-family models on CPU: paged KV cache with prefix caching, continuous batching
with chunked prefill and preemption, per-request sampling, and prompt-lookup speculative decoding.

    config.py     EngineConfig, SamplingParams
    kv_cache.py   KVCacheManager: block pool, block tables, ref counts, prefix cache (LRU)
    scheduler.py  Scheduler: schedule() -> SchedulerOutput, update_from_output(output, sampled tokens)
    model.py      LlamaRunner: the weights of a Hugging Face LlamaForCausalLM, our forward over the KV pool
    _weights.py   the linear weights per format (float32, bfloat16, int8, int4), fused q|k|v and gate|up
    _auto.py      EngineConfig.weights = "auto": the format by the model's own layers and the CPU's flags
    _perplexity.py  perplexity through the runner, per weight format
    sampling.py   greedy / temperature / top-k / top-p / repetition penalty; stop strings via a decode callback
    spec.py       n-gram drafts and their greedy verification
    engine.py     LLMEngine: add_request, step, abort, generate, stats

The engine takes and returns token ids; it knows nothing about tokenizers or HTTP.
"""

from infopt.serve.engine.config import EngineConfig, SamplingParams
from infopt.serve.engine.engine import EngineStats, LLMEngine, model_eos_token_ids
from infopt.serve.engine.kv_cache import KVCacheManager, PrefixHit, hash_block
from infopt.serve.engine.model import LlamaRunner, ModelShape
from infopt.serve.engine.sampling import find_stop_string
from infopt.serve.engine.scheduler import Request, RequestOutput, ScheduledSeq, Scheduler, SchedulerOutput
from infopt.serve.engine.spec import accept_greedy, propose_ngram

__all__ = [
    "EngineConfig",
    "EngineStats",
    "KVCacheManager",
    "LLMEngine",
    "LlamaRunner",
    "ModelShape",
    "PrefixHit",
    "Request",
    "RequestOutput",
    "SamplingParams",
    "ScheduledSeq",
    "Scheduler",
    "SchedulerOutput",
    "accept_greedy",
    "find_stop_string",
    "hash_block",
    "model_eos_token_ids",
    "propose_ngram",
]
