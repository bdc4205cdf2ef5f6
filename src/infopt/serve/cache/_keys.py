"""Cache keys: sha256 of (model fingerprint, endpoint, the request fields that change the answer, tenant scope).

Which fields count is data (`EXACT_FIELDS`, `PROMPT_FIELDS`, `TEXT_FIELDS`): `stream`, `stream_options`,
`user` and request ids never change the answer and are left out. The caller passes the request body with its
defaults filled in (e.g. pydantic's `model_dump()`); a field that is None counts as absent.

    exact_key("fp", "/v1/classify", {"model": "clf", "input": ["a  b"], "truncate": False}, scope="t1")
    prompt_key("fp", "/v1/chat/completions", body, scope="t1")      # None: not a completion endpoint
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DEFAULT_TEMPERATURE",
    "EXACT_FIELDS",
    "GENERATIVE",
    "PROMPT_FIELDS",
    "SHARED_SCOPE",
    "TEXT_FIELDS",
    "deterministic",
    "exact_key",
    "normalise_text",
    "prompt_form",
    "prompt_key",
    "scope_of",
]

KEY_VERSION = 1
"""Bumped when the key rule changes: old keys are then simply never asked for again."""

SHARED_SCOPE = "*shared*"
"""The scope of entries every tenant may read (tenant scopes are `t:<tenant>`, so none can equal it)."""

DEFAULT_TEMPERATURE = 1.0
"""The server's temperature when a request sends none (see `_lm_routes.sampling`)."""

_SAMPLING = ("model", "max_tokens", "temperature", "top_p", "seed", "stop", "n")

EXACT_FIELDS: Mapping[str, frozenset[str]] = {
    "/v1/classify": frozenset({"model", "input", "truncate"}),
    "/v1/embeddings": frozenset({"model", "input", "encoding_format", "dimensions", "truncate"}),
    "/v1/completions": frozenset({*_SAMPLING, "prompt"}),
    "/v1/chat/completions": frozenset({*_SAMPLING, "messages", "max_completion_tokens"}),
}
"""Per endpoint, the request fields that change the answer (the exact tier's key); all others are ignored."""

TEXT_FIELDS: frozenset[str] = frozenset({"input", "prompt", "messages"})
"""Fields whose texts (strings, anywhere inside) are whitespace-normalised before hashing."""

GENERATIVE: frozenset[str] = frozenset({"/v1/completions", "/v1/chat/completions"})
"""Endpoints whose answers are samples: cacheable only when deterministic (or `cache_nondeterministic`)."""

PROMPT_FIELDS: tuple[str, ...] = ("model", "max_tokens", "temperature", "top_p", "seed", "stop", "n")
"""The sampling parameters of the prompt tier's key (besides the normalised prompt or messages)."""


def normalise_text(text: str) -> str:
    """Runs of whitespace collapsed to one space, the ends stripped."""
    return " ".join(text.split())


def _norm(value: Any, texts: bool) -> Any:
    """JSON-ready `value`: None members dropped, integral floats as ints (0.0 is 0), strings normalised when
    `texts`."""
    if isinstance(value, str):
        return normalise_text(value) if texts else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _norm(v, texts) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_norm(v, texts) for v in value]
    return value


def _texts(value: Any) -> Any:
    return _norm(value, True)


def _digest(parts: Mapping[str, Any]) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def scope_of(tenant: str | None, shared: bool) -> str:
    """The key scope of an entry: the tenant's own (`t:<tenant>`), or `SHARED_SCOPE`."""
    return SHARED_SCOPE if shared else f"t:{tenant or ''}"


def deterministic(body: Mapping[str, Any]) -> bool:
    """Whether a generation request always gives the same answer: temperature 0, or a fixed seed."""
    temperature = body.get("temperature")
    temperature = DEFAULT_TEMPERATURE if temperature is None else temperature
    return temperature == 0 or body.get("seed") is not None


def exact_key(fingerprint: str, endpoint: str, body: Mapping[str, Any], *, scope: str) -> str | None:
    """The exact tier's key, or None when the endpoint is not cached. Texts are whitespace-normalised."""
    fields = EXACT_FIELDS.get(endpoint)
    if fields is None:
        return None
    kept = {k: _norm(v, k in TEXT_FIELDS) for k, v in body.items() if k in fields and v is not None}
    return _digest({"v": KEY_VERSION, "tier": "exact", "fp": fingerprint, "endpoint": endpoint, "scope": scope,
                    "body": kept})


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))


def prompt_form(endpoint: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The canonical prompt of a completion / chat request (also what a semantic tier may embed): `{"prompt"}`
    or `{"messages": [{"role", "content"(, "name")}]}` with normalised texts and `developer` as `system`, plus the
    sampling parameters (`max_completion_tokens` as `max_tokens`, `stop` as a list). None for other endpoints."""
    if endpoint not in GENERATIVE:
        return None
    out: dict[str, Any] = {}
    if endpoint == "/v1/completions":
        prompt = body.get("prompt")
        prompt = prompt[0] if isinstance(prompt, list | tuple) and len(prompt) == 1 else prompt
        out["prompt"] = _texts(prompt)
    else:
        messages = []
        for m in body.get("messages") or ():
            role = m.get("role")
            message = {"role": "system" if role == "developer" else role,
                       "content": normalise_text(_content(m.get("content", "")))}
            if m.get("name") is not None:
                message["name"] = m["name"]
            messages.append(message)
        out["messages"] = messages
    for name in PROMPT_FIELDS:
        value = body.get(name)
        if name == "max_tokens" and body.get("max_completion_tokens") is not None:
            value = body["max_completion_tokens"]
        if name == "stop" and isinstance(value, str):
            value = [value]
        if name == "temperature" and value is None:
            value = DEFAULT_TEMPERATURE
        if name == "top_p" and value is None:
            value = 1.0
        if name == "n" and value is None:
            value = 1
        if value is not None and value != []:
            out[name] = value
    return out


def prompt_key(fingerprint: str, endpoint: str, body: Mapping[str, Any], *, scope: str) -> str | None:
    """The prompt tier's key (see `prompt_form`), or None when the endpoint is not a completion endpoint."""
    form = prompt_form(endpoint, body)
    if form is None:
        return None
    return _digest({"v": KEY_VERSION, "tier": "prompt", "fp": fingerprint, "scope": scope,
                    "prompt": _norm(form, False)})
