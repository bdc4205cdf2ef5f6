"""The exact tier (every cached endpoint, keyed by the whole normalised request) and the prompt tier
(completions and chat, keyed by the canonical prompt and sampling parameters, so that equivalent requests
written differently share an answer).

    exact = ExactCache(backend, ttl_s=3600)
    hit = exact.get(CacheRequest("/v1/classify", body.model_dump(), fingerprint, tenant))
    if hit is None:
        response = ...; exact.put(request, response, model_s=elapsed)
"""

from __future__ import annotations

from infopt.serve.cache._keys import exact_key, prompt_key
from infopt.serve.cache._tiers import CacheRequest, CacheTier

__all__ = ["ExactCache", "PromptCache"]


class ExactCache(CacheTier):
    """Answers a request seen before, field for field (texts whitespace-normalised; see `EXACT_FIELDS`)."""

    tier = "exact"

    def key(self, request: CacheRequest, scope: str) -> str | None:
        return exact_key(request.fingerprint, request.endpoint, request.body, scope=scope)


class PromptCache(CacheTier):
    """Answers a completion / chat request whose canonical prompt and sampling were seen before (see
    `prompt_form`): `developer` = `system`, text parts joined, `max_completion_tokens` = `max_tokens`, ..."""

    tier = "prompt"

    def key(self, request: CacheRequest, scope: str) -> str | None:
        return prompt_key(request.fingerprint, request.endpoint, request.body, scope=scope)
