"""Input checks shared by the compression stages."""

from __future__ import annotations

from torch import nn

from infopt.errors import NotApplicable
from infopt.models import LoadedModel

__all__ = ["require_torch_module"]


def require_torch_module(model: LoadedModel, stage: str) -> None:
    """Refuse an ONNX (or other non-torch) model with a message naming `stage`."""
    if not isinstance(model.model, nn.Module):
        raise NotApplicable(
            f"{stage} needs a PyTorch model; this one is {type(model.model).__name__} "
            f"(format {model.manifest.format!r}).",
            f"{stage} the float32 model it was made from.",
        )
