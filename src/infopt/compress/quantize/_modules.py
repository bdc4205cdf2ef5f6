"""Finding the Linear layers a scheme quantizes, by qualified name and exclusion patterns."""

from __future__ import annotations

from fnmatch import fnmatchcase

from torch import nn

__all__ = ["excluded", "linear_layers"]


def excluded(name: str, patterns: tuple[str, ...]) -> bool:
    """True if the module name matches one of the fnmatch patterns."""
    return any(fnmatchcase(name, p) for p in patterns)


def linear_layers(model: nn.Module, exclude: tuple[str, ...]) -> list[tuple[str, nn.Linear]]:
    """(name, module) of every exact nn.Linear not excluded, in module order."""
    return [
        (name, m) for name, m in model.named_modules()
        if type(m) is nn.Linear and not excluded(name, exclude)
    ]

