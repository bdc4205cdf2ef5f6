"""The label names of a model, column reordering between teachers, and the weighted soft targets of several teachers."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from infopt.errors import UserError
from infopt.models import LoadedModel

__all__ = ["column_order", "label_names", "mix_soft_targets", "normalised_weights"]


def label_names(model: LoadedModel) -> list[str]:
    """The class names of a classifier in logit order (from its manifest, else its config)."""
    if model.manifest.labels:
        return list(model.manifest.labels)
    config = getattr(model.model, "config", None)
    id2label = getattr(config, "id2label", None) or {}
    return [str(label) for _, label in sorted((int(i), label) for i, label in id2label.items())]


def column_order(source: list[str], target: list[str], what: str) -> list[int]:
    """Indices that reorder columns labelled `source` into the order `target`; InfoptError if the sets differ."""
    if sorted(source) != sorted(target) or len(set(source)) != len(source):
        raise UserError(
            f"{what} have different label sets: {source} vs {target}.",
            "distil between classifiers of the same classes (same names), or build the student with make_student.",
        )
    return [source.index(name) for name in target]


def normalised_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise UserError(
            f"{len(weights)} teacher weights were given for {count} teachers.", "give one weight per teacher."
        )
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def mix_soft_targets(logits: Sequence[torch.Tensor], weights: Sequence[float], temperature: float) -> torch.Tensor:
    """Logits z whose softmax(z / T) is the weighted mean of the teachers' softmax(z_i / T).

    z = T * log(sum_i w_i softmax(z_i / T)), so the single-teacher loss applied to z gives exactly
    KL(sum_i w_i P_i || P_S) with the usual T^2 scaling.
    """
    stacked = torch.stack([torch.log_softmax(z.float() / temperature, dim=-1) for z in logits])  # [K, N, C]
    w = torch.tensor(list(weights), dtype=stacked.dtype).clamp(min=1e-30).log().view(-1, 1, 1)
    return temperature * torch.logsumexp(stacked + w, dim=0)
