"""The OpenAI bodies of completions and chat completions: whole responses, stream chunks (one choice each),
logprobs in either endpoint's shape, and the replay of a cached response as a stream."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Logprobs", "Shape", "replay", "sse"]


def sse(data: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class Logprobs:
    """The chosen tokens' logprobs of one choice, in its endpoint's shape, piece by piece (completions count
    `text_offset` on from the previous piece)."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.offset = 0

    def piece(self, pairs: Sequence[tuple[str, float]]) -> dict[str, Any]:
        """`{"content": [...]}` (chat) or `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`."""
        if self.chat:
            return {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
                                for t, lp in pairs]}
        offsets = []
        for token, _ in pairs:
            offsets.append(self.offset)
            self.offset += len(token)
        return {"tokens": [t for t, _ in pairs], "token_logprobs": [lp for _, lp in pairs],
                "top_logprobs": [{t: lp} for t, lp in pairs], "text_offset": offsets}


@dataclass
class Shape:
    """The bodies of one response: `text_completion` or `chat.completion` (and their chunks)."""

    chat: bool
    model: str
    fingerprint: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex[:24]

    def _head(self, chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": self.fingerprint}

    def choice(self, index: int, text: str, finish: str, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        """One choice of a whole response."""
        out: dict[str, Any] = {"index": index, "logprobs": logprobs, "finish_reason": finish}
        out.update({"message": {"role": "assistant", "content": text}} if self.chat else {"text": text})
        return out

    def body(self, choices: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
        return {**self._head(False), "choices": choices, "usage": usage}

    def chunk(self, text: str | None, finish: str | None = None, *, first: bool = False, index: int = 0,
              logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index, "logprobs": logprobs, "finish_reason": finish}
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else {} if text is None else {"content": text}
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        return {**self._head(True), "choices": [choice]}

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {**self._head(True), "choices": [], "usage": usage}


async def replay(hit: dict[str, Any], chat: bool, include_usage: bool) -> AsyncIterator[str]:
    """A cached body as the chunks a stream of it would have sent (each choice's text in one chunk)."""
    shape = Shape(chat, hit["model"], hit.get("system_fingerprint", ""))
    shape.id, shape.created = hit["id"], hit["created"]
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    first = {**extra, "infopt": hit["infopt"]}
    for choice in hit["choices"]:
        index = choice.get("index", 0)
        text = choice["message"]["content"] if chat else choice["text"]
        if chat:
            yield sse({**shape.chunk(None, first=True, index=index), **first})
            first = extra
        if text:
            yield sse({**shape.chunk(text, index=index), **first})
            first = extra
        yield sse({**shape.chunk(None, choice["finish_reason"], index=index), **first})
        first = extra
    if include_usage:
        yield sse(shape.usage_chunk(hit["usage"]))
    yield "data: [DONE]\n\n"
