"""Request bodies of the HTTP API (pydantic), strict about types."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr

__all__ = ["ClassifyRequest", "EmbeddingsRequest"]


class ClassifyRequest(BaseModel):
    """`POST /v1/classify`: one text or a list; `truncate` cuts texts over the model's token limit."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: StrictStr
    input: StrictStr | list[StrictStr]
    truncate: StrictBool = False


class EmbeddingsRequest(BaseModel):
    """`POST /v1/embeddings`, OpenAI's shape (token-id inputs are refused: ids differ between tokenizers);
    `truncate` is infopt's extension. Unknown fields are ignored, as newer OpenAI clients may send some."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: StrictStr
    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = None
    user: StrictStr | None = None
    truncate: StrictBool = False
