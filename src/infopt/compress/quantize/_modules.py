"""Finding and swapping submodules by qualified name."""

from __future__ import annotations

from fnmatch import fnmatchcase

from torch import nn

__all__ = ["excluded", "linear_layers", "set_submodule"]


def excluded(name: str, patterns: tuple[str, ...]) -> bool:
    """True if the module name matches one of the fnmatch patterns."""
    return any(fnmatchcase(name, p) for p in patterns)


def linear_layers(model: nn.Module, exclude: tuple[str, ...]) -> list[tuple[str, nn.Linear]]:
    """(name, module) of every exact nn.Linear not excluded, in module order."""
    return [
        (name, m) for name, m in model.named_modules()
        if type(m) is nn.Linear and not excluded(name, exclude)
    ]


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
