"""`sparse.safetensors`: sparse tensors as a bitmask plus their non-zero values, every other tensor dense.

A tensor is stored sparse when that makes it smaller: (non-zeros x element size) + numel / 8 bytes of mask
< numel x element size, i.e. above ~3% zeros for float32. Reading it back gives an ordinary dense state dict.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from infopt.errors import UserError

__all__ = ["SPARSE_FILE", "read_sparse", "sparse_bytes", "write_sparse"]

SPARSE_FILE = "sparse.safetensors"
_FORMAT = "infopt-sparse-v1"
_VALUES, _MASK = ".__values", ".__mask"


def sparse_bytes(t: torch.Tensor) -> int:
    """Bytes the tensor takes in bitmask + values form."""
    return int(torch.count_nonzero(t)) * t.element_size() + (t.numel() + 7) // 8


def _encode(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = t.detach().reshape(-1)
    keep = flat != 0
    bits = np.packbits(keep.numpy())
    return flat[keep].contiguous(), torch.from_numpy(bits)


def write_sparse(model: nn.Module, path: Path) -> dict[str, int]:
    """Write `model.state_dict()` to `path`; returns {"sparse_tensors": n, "bytes": file size}."""
    tensors: dict[str, torch.Tensor] = {}
    sparse: dict[str, list[int]] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, tuple[int, ...], torch.dtype], str] = {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), tuple(t.shape), t.dtype)
        if t.numel() and key in seen:  # tied weights (e.g. lm_head and the embedding) are stored once
            aliases[name] = seen[key]
            continue
        seen[key] = name
        t = t.detach().cpu()
        if t.is_floating_point() and t.numel() >= 64 and sparse_bytes(t) < t.numel() * t.element_size():
            values, bits = _encode(t)
            tensors[name + _VALUES], tensors[name + _MASK] = values, bits
            sparse[name] = list(t.shape)
        else:
            tensors[name] = t.contiguous()
    meta = {"format": _FORMAT, "sparse": json.dumps(sparse), "aliases": json.dumps(aliases)}
    save_file(tensors, str(path), metadata=meta)
    return {"sparse_tensors": len(sparse), "bytes": path.stat().st_size}


def read_sparse(path: Path) -> dict[str, torch.Tensor]:
    """The dense state dict stored by `write_sparse` (tied names included)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != _FORMAT:
            raise UserError(f"{path} is not an infopt sparse weight file.", "re-save the model with infopt.")
        sparse: dict[str, list[int]] = json.loads(meta["sparse"])
        aliases: dict[str, str] = json.loads(meta["aliases"])
        state: dict[str, torch.Tensor] = {}
        for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
            if not key.endswith((_VALUES, _MASK)):
                state[key] = f.get_tensor(key)
        for name, shape in sparse.items():
            values, bits = f.get_tensor(name + _VALUES), f.get_tensor(name + _MASK)
            numel = int(np.prod(shape)) if shape else 1
            keep = torch.from_numpy(np.unpackbits(bits.numpy(), count=numel).astype(bool))
            dense = torch.zeros(numel, dtype=values.dtype)
            dense[keep] = values
            state[name] = dense.view(shape)
    for name, target in aliases.items():
        state[name] = state[target]
    return state
