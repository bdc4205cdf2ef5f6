"""Module plumbing shared by the compressors: swapping a submodule, finding the transformer blocks, forward hooks,
running in eval mode for a while."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["BLOCK_PATHS", "base_of", "block_path", "eval_mode", "forward_hooks", "set_submodule"]

BLOCK_PATHS: dict[str, str] = {"bert": "encoder.layer", "llama": "layers"}
"""Family -> where its ModuleList of transformer blocks sits inside the base model (`base_of(model)`):
BERT / RoBERTa encoders, Llama-like decoders."""

Hook = Callable[..., Any]


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at dotted `path` of `root` by `module`."""
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def base_of(model: nn.Module) -> nn.Module:
    """The transformers base model inside a task model (`model.bert`, `model.model`), or the model itself."""
    base = getattr(model, "base_model", model)
    return base if isinstance(base, nn.Module) else model


def block_path(model: nn.Module) -> str | None:
    """The first of `BLOCK_PATHS` that holds a ModuleList inside `base_of(model)`, or None."""
    base = base_of(model)
    for path in BLOCK_PATHS.values():
        try:
            if isinstance(base.get_submodule(path), nn.ModuleList):
                return path
        except AttributeError:
            continue
    return None


@contextlib.contextmanager
def forward_hooks(
    pre: Iterable[tuple[nn.Module, Hook]] = (), post: Iterable[tuple[nn.Module, Hook]] = (), *,
    with_kwargs: bool = False,
) -> Iterator[None]:
    """Forward pre-hooks `hook(module, args)` and forward hooks `hook(module, args, output)` registered while
    inside (with `with_kwargs`: `hook(module, args, kwargs[, output])`), always removed on the way out."""
    handles: list[RemovableHandle] = []
    try:
        for module, hook in pre:
            handles.append(module.register_forward_pre_hook(hook, with_kwargs=with_kwargs))
        for module, hook in post:
            handles.append(module.register_forward_hook(hook, with_kwargs=with_kwargs))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode while inside; its train / eval mode is restored on the way out."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
