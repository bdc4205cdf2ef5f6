"""Response caches of the server: exact and prompt tiers, storage backends, and the semantic tier.

    from infopt.serve.cache import CacheConfig, CacheRequest, CacheStack
    caches = CacheStack.open(CacheConfig(backend="sqlite"))
    request = CacheRequest("/v1/classify", body.model_dump(), fingerprint, tenant)
    hit = caches.get(request)               # exact, then prompt; None: ask the model, then
    caches.put(request, response, model_s=seconds_the_model_took)
"""

# ---------------------------------------------------------------- exact / prompt tiers and storage
from infopt.serve.cache._backend_layered import Layered
from infopt.serve.cache._backend_sqlite import SQLiteBackend
from infopt.serve.cache._backends import Backend, CacheEvent, MemoryBackend
from infopt.serve.cache._exact import ExactCache, PromptCache
from infopt.serve.cache._keys import (
    EXACT_FIELDS,
    GENERATIVE,
    PROMPT_FIELDS,
    SHARED_SCOPE,
    deterministic,
    exact_key,
    normalise_text,
    prompt_form,
    prompt_key,
    scope_of,
)
from infopt.serve.cache._redis import RedisBackend
from infopt.serve.cache._store import FORMAT_VERSION, CorruptEntry, Entry, index_tags
from infopt.serve.cache._store_config import CacheConfig, default_path
from infopt.serve.cache._store_stack import CacheStack, open_backend
from infopt.serve.cache._tiers import CacheHit, CacheRequest, CacheTier, TierStats

# ---------------------------------------------------------------- semantic tier (its own helper adds these)
# isort: split
from infopt.serve.cache._calibrate import Calibration, ScoredPair, calibrate, cp_upper, score_pairs
from infopt.serve.cache._encoder import PromptEncoder, check_agreement
from infopt.serve.cache._guard import GuardDecision, extract, guard, normalize_numbers
from infopt.serve.cache._index import VectorIndex
from infopt.serve.cache._pairs import Pair, load_pairs
from infopt.serve.cache._semantic import NewEntry, SemanticCache, SemanticHit
from infopt.serve.cache._shadow import ShadowVerifier

__all__ = [
    "EXACT_FIELDS",
    "FORMAT_VERSION",
    "GENERATIVE",
    "PROMPT_FIELDS",
    "SHARED_SCOPE",
    "Backend",
    "CacheConfig",
    "CacheEvent",
    "CacheHit",
    "CacheRequest",
    "CacheStack",
    "CacheTier",
    "Calibration",
    "CorruptEntry",
    "Entry",
    "ExactCache",
    "GuardDecision",
    "Layered",
    "MemoryBackend",
    "NewEntry",
    "Pair",
    "PromptCache",
    "PromptEncoder",
    "RedisBackend",
    "SQLiteBackend",
    "ScoredPair",
    "SemanticCache",
    "SemanticHit",
    "ShadowVerifier",
    "TierStats",
    "VectorIndex",
    "calibrate",
    "check_agreement",
    "cp_upper",
    "default_path",
    "deterministic",
    "exact_key",
    "extract",
    "guard",
    "index_tags",
    "load_pairs",
    "normalise_text",
    "normalize_numbers",
    "open_backend",
    "prompt_form",
    "prompt_key",
    "scope_of",
    "score_pairs",
]
