"""A two-model cascade: the small model answers every row, the large one only the rows the small one is unsure of.

A row is unsure when the small model's top softmax probability is below `threshold`; a threshold above 1 sends
every row to the large model, one at or below 1/classes none. Both models take the same token ids (the cascade
checks that their tokenizers agree), so the cascade is called like any Hugging Face classifier.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import torch
from transformers import AutoConfig, PreTrainedTokenizerBase

from infopt.errors import UserError
from infopt.models import LoadedModel

__all__ = ["CascadeModel", "check_compatible", "config_of", "small_confidence"]

_PROBE = "Hello, World! A naïve café review: 10/10, wouldn't watch again... #unbelievable"


def config_of(loaded: LoadedModel) -> Any:
    """The Hugging Face config of a loaded model (ONNX models: the config.json beside model.onnx), or None."""
    config = getattr(loaded.model, "config", None)
    if config is not None:
        return config
    path = getattr(loaded.model, "path", None)
    if path is not None and (path.parent / "config.json").exists():
        return AutoConfig.from_pretrained(path.parent)
    return None


def _same_tokens(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    if a.get_vocab() != b.get_vocab() or a.pad_token_id != b.pad_token_id:
        return False
    return bool(a(_PROBE)["input_ids"] == b(_PROBE)["input_ids"])


def check_compatible(small: LoadedModel, large: LoadedModel) -> None:
    """UserError unless both are classifiers with the same labels and tokenizers that give the same ids."""
    for role, m in (("small", small), ("large", large)):
        if m.task != "classification":
            raise UserError(f"A cascade needs two classifiers; the {role} model is a {m.task} model.",
                            "pass two classification models.")
    if small.manifest.labels and large.manifest.labels and small.manifest.labels != large.manifest.labels:
        raise UserError(f"The cascade's models have different labels ({small.manifest.labels} vs "
                        f"{large.manifest.labels}).", "use two models trained on the same classes, in the same order.")
    if not _same_tokens(small.tokenizer, large.tokenizer):
        raise UserError("The cascade's models use different tokenizers.",
                        "build the small model from the large one (quantize, prune, distill) so they share one.")


def small_confidence(logits: torch.Tensor) -> torch.Tensor:
    """[N] top softmax probability of [N, C] logits."""
    return torch.softmax(logits.float(), dim=-1).amax(dim=-1)


def _rows(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch restricted to `rows`, without the padding columns no remaining row needs."""
    sub = {k: v[rows] for k, v in batch.items()}
    mask = sub.get("attention_mask")
    if mask is not None:
        cols = mask.bool().any(dim=0)
        if not bool(cols.all()):
            sub = {k: v[:, cols] for k, v in sub.items()}
    return sub


class CascadeModel(torch.nn.Module):
    """`small` first, `large` for the rows whose top probability is below `threshold`; counts escalations."""

    def __init__(self, small: LoadedModel, large: LoadedModel, threshold: float, config: Any = None) -> None:
        super().__init__()
        check_compatible(small, large)
        self.small = small
        self.large = large
        self.threshold = float(threshold)
        self.config = config if config is not None else config_of(large)
        # torch sub-models are registered, so parameters(), eval() and the parameter count see them
        self.small_module = small.model if isinstance(small.model, torch.nn.Module) else None
        self.large_module = large.model if isinstance(large.model, torch.nn.Module) else None
        self._lock = threading.Lock()
        self.rows = 0
        """Rows answered since the last `reset_counts`."""
        self.escalated = 0
        """Of those, rows the large model answered."""
        self.last_escalated: list[bool] = []
        """Per row of the last call: whether the large model answered it."""

    @property
    def escalation_rate(self) -> float:
        """Share of rows sent to the large model since the last `reset_counts` (0 before any)."""
        return self.escalated / self.rows if self.rows else 0.0

    def reset_counts(self) -> None:
        with self._lock:
            self.rows, self.escalated, self.last_escalated = 0, 0, []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **_: Any) -> SimpleNamespace:
        batch = {"input_ids": input_ids}
        if attention_mask is not None:
            batch["attention_mask"] = attention_mask
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        logits = self.small.forward(batch).float()
        unsure = small_confidence(logits) < self.threshold
        if bool(unsure.any()):
            rows = unsure.nonzero().view(-1)
            logits = logits.clone()
            logits[rows] = self.large.forward(_rows(batch, rows)).float()
        with self._lock:
            self.rows += int(input_ids.shape[0])
            self.escalated += int(unsure.sum())
            self.last_escalated = unsure.tolist()
        return SimpleNamespace(logits=logits)
