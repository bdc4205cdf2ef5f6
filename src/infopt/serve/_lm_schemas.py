"""Request bodies of the OpenAI-compatible completions and chat completions endpoints, strict about types.

Unknown fields are refused (400); OpenAI's fields that this server does not implement are accepted only at
their neutral values (`frequency_penalty: 0`, `top_logprobs: 0`, ...), so that a client sending defaults works.
`n` asks for several choices; `logprobs` (an int for completions, true for chat) for the chosen tokens' logprobs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

__all__ = ["MAX_N", "ChatCompletionRequest", "ChatMessage", "CompletionRequest", "StreamOptions"]

_Temperature = Annotated[float, Field(strict=True, ge=0, le=2)]
_TopP = Annotated[float, Field(strict=True, gt=0, le=1)]
_Tokens = Annotated[int, Field(strict=True, ge=1)]
_Stop = Annotated[str, Field(strict=True, min_length=1)]
_N = Annotated[int, Field(strict=True, ge=1, le=16)]
_TopLogprobs = Annotated[int, Field(strict=True, ge=0, le=5)]

MAX_N = 16
"""Most choices of one request."""

_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "frequency_penalty": (None, 0), "presence_penalty": (None, 0), "top_logprobs": (None, 0), "logit_bias": (None, {}),
    "echo": (None, False), "suffix": (None, ""),
    "best_of": (None, 1), "parallel_tool_calls": (None,), "tools": (None, []), "tool_choice": (None, "none"),
    "response_format": (None, {"type": "text"}), "service_tier": (None, "auto"), "store": (None, False),
    "metadata": (None, {}),
}


def _drop_neutral(data: Any) -> Any:
    """Remove unimplemented OpenAI fields at their neutral values; refuse them at any other value."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key in set(out) & set(_NEUTRAL):
        value = out.pop(key)
        if not any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in _NEUTRAL[key]):
            raise ValueError(f"{key} = {value!r} is not supported by this server (leave it out)")
    return out


class StreamOptions(BaseModel):
    """`stream_options`: `include_usage` adds a last chunk with the usage (and `"usage": null` on the others)."""

    model_config = ConfigDict(extra="forbid")

    include_usage: StrictBool = False


class _Generation(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: StrictStr
    max_tokens: _Tokens | None = None
    temperature: _Temperature | None = None
    top_p: _TopP | None = None
    seed: StrictInt | None = None
    stop: _Stop | Annotated[list[_Stop], Field(max_length=4)] | None = None
    n: _N | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    user: StrictStr | None = None

    _drop = model_validator(mode="before")(_drop_neutral)

    def stops(self) -> tuple[str, ...]:
        """The stop strings, as a tuple."""
        return () if self.stop is None else (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def wants_logprobs(self) -> bool:
        """Whether the chosen tokens' logprobs are asked for."""
        return False


class CompletionRequest(_Generation):
    """`POST /v1/completions`: one prompt (a string, or a list of one string); `max_tokens` defaults to 16."""

    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=1)]
    logprobs: _TopLogprobs | None = None
    """Return the chosen tokens' logprobs (0 to 5: alternatives are not computed, each `top_logprobs` entry
    holds the chosen token only)."""

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs is not None


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: StrictStr


class ChatMessage(BaseModel):
    """One chat message; `content` is a string or a list of text parts (joined)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[_TextPart]
    name: StrictStr | None = None

    def for_template(self) -> dict[str, str]:
        """`{"role", "content"}` for a chat template (`developer` is given as `system`)."""
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        out = {"role": "system" if self.role == "developer" else self.role, "content": content}
        if self.name is not None:
            out["name"] = self.name
        return out


class ChatCompletionRequest(_Generation):
    """`POST /v1/chat/completions`: `max_completion_tokens` is the newer name of `max_tokens`."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: _Tokens | None = None
    logprobs: StrictBool | None = None
    """Return the chosen tokens' logprobs in `choices[].logprobs.content`."""

    @property
    def wants_logprobs(self) -> bool:
        return bool(self.logprobs)

    def token_budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
