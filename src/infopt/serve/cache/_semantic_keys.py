"""What the semantic tier embeds of a request and what must match exactly (`query_of`), and when a shadow run's
answer agrees with a cached one (`answers_agree`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from infopt.serve.cache._keys import normalise_text, prompt_form

__all__ = ["answers_agree", "digest", "query_of"]


def digest(parts: Any) -> str:
    """sha256 (hex) of JSON-ready `parts`, keys sorted."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _one_text(value: Any) -> str | None:
    value = value[0] if isinstance(value, list | tuple) and len(value) == 1 else value
    return normalise_text(value) if isinstance(value, str) and value.strip() else None


def query_of(endpoint: str, body: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(the text to embed, the context that must match exactly) of a request, or None when it has no one text."""
    if endpoint == "/v1/classify":
        text = _one_text(body.get("input"))
        return None if text is None else (text, {"model": body.get("model"), "truncate": body.get("truncate")})
    form = prompt_form(endpoint, body)
    if form is None:
        return None
    if endpoint == "/v1/completions":
        text = _one_text(form.pop("prompt", None))
        return None if text is None else (text, form)
    messages = form.get("messages") or []
    if not messages or messages[-1].get("role") != "user" or not messages[-1].get("content"):
        return None
    return str(messages[-1]["content"]), {**form, "messages": messages[:-1]}


def _answer_of(endpoint: str, response: Mapping[str, Any]) -> Any:
    if endpoint == "/v1/chat/completions":
        return normalise_text(str(response["choices"][0]["message"]["content"]))
    if endpoint == "/v1/completions":
        return normalise_text(str(response["choices"][0]["text"]))
    if endpoint == "/v1/classify":
        return [d["label"] for d in response["data"]]
    return response


def answers_agree(endpoint: str, cached: Mapping[str, Any], fresh: Mapping[str, Any]) -> bool:
    """Whether a fresh answer agrees with a cached one: the same generated text (whitespace-normalised) for
    completions and chat, the same labels for classify; a malformed answer never agrees."""
    try:
        return bool(_answer_of(endpoint, cached) == _answer_of(endpoint, fresh))
    except (KeyError, IndexError, TypeError):
        return False
