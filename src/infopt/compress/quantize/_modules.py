"""Finding and swapping submodules by qualified name (`set_submodule` lives in infopt.models)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from torch import nn

from infopt.models._modules import set_submodule

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

