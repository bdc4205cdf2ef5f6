"""The fingerprint of a model in memory (a saved folder is fingerprinted by its files: `fingerprint_folder`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from infopt.models._loaded import LoadedModel

__all__ = ["fingerprint_model"]


def fingerprint_model(model: LoadedModel) -> str:
    """sha256 (first 16 hex) of a model in memory: its current weights and its tokenizer, whatever its manifest
    says (`fingerprint_folder` hashes the files of a saved one)."""
    h = hashlib.sha256()
    for name, t in sorted(model.model.state_dict().items()):
        h.update(name.encode())
        if isinstance(t, torch.Tensor) and not t.is_quantized:
            t = t.detach().cpu().contiguous().reshape(-1)
            h.update(str(t.dtype).encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(t).encode())
    h.update(_tokenizer_fingerprint(model.tokenizer).encode())
    return h.hexdigest()[:16]


def _tokenizer_fingerprint(tok: Any) -> str:
    """The tokenizer's definition without its per-call state (padding / truncation settings change per call)."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return json.dumps(tok.get_vocab(), sort_keys=True)
    spec = json.loads(backend.to_str())
    spec.pop("truncation", None)
    spec.pop("padding", None)
    return json.dumps(spec, sort_keys=True)
