"""Pruning that really shrinks models: `prune(model, config)` for every method in PRUNE_METHODS.

- `magnitude` / `wanda`: unstructured or N:M (2:4) sparsity; saved as `sparse.safetensors` (bitmask + values),
  loaded back dense. Honest: smaller on disk, not faster on CPU.
- `structured`: removes attention heads, FFN neurons and layers (BERT, Llama; RoBERTa without heads); the
  result is a smaller dense transformers model with no masks that loads with `from_pretrained`.
Optional recovery fine-tuning (distilling from the unpruned model) via `RecoveryConfig`.
"""

from infopt.compress.prune._api import prune
from infopt.compress.prune._configs import (
    PRUNE_METHODS,
    MagnitudeConfig,
    PruneConfig,
    RecoveryConfig,
    StructuredConfig,
    WandaConfig,
    config_from_dict,
    config_from_name,
)
from infopt.compress.prune._sparse_format import SPARSE_FILE, read_sparse, write_sparse

__all__ = [
    "PRUNE_METHODS",
    "SPARSE_FILE",
    "MagnitudeConfig",
    "PruneConfig",
    "RecoveryConfig",
    "StructuredConfig",
    "WandaConfig",
    "config_from_dict",
    "config_from_name",
    "prune",
    "read_sparse",
    "write_sparse",
]
