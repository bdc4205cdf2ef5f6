"""Each package of `src/infopt` imports only the packages below it (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import infopt

SRC = Path(infopt.__file__).parent

LAYERS: dict[str, float] = {
    # the foundation: errors, then the config field checks and atomic writes, which raise them
    "errors": 0, "_config": 0.5, "_atomic": 0.5,
    "data": 1,
    "models": 2,
    "train": 3,
    # compress: quantize and distill stand alone (neither imports the other); prune recovers by distilling
    "compress._checks": 4, "compress.quantize": 4.1, "compress.distill": 4.1, "compress.cascade": 4.1,
    "compress.prune": 4.2, "compress": 4.3,
    "evaluate": 5,
    "optimize": 6,
    "serve": 7,
    "monitor": 8,
    "_cli_parser": 8.8, "_cli_process": 8.8, "_cli_serving": 8.9, "cli": 9, "__init__": 9, "__main__": 9.5,
}


def layer_of(module: str) -> tuple[str, float]:
    """`infopt.compress.prune._api` -> ("compress.prune", 5): the longest prefix named in LAYERS."""
    parts = module.removeprefix("infopt.").split(".") if module != "infopt" else ["__init__"]
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return key, LAYERS[key]
    raise KeyError(f"{module} is in no layer: add its package to LAYERS in tests/test_layers.py")


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] if len(parts) > 1 else [*parts[:-1], "__init__"]
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every `import` / `from ... import` of infopt in `source`, at any depth."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "infopt"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name.split(".")[0] == "infopt":
                found.append((node.lineno, name))
    return found


def upward_imports(path: Path) -> list[str]:
    """Imports in `path` that point to a higher layer, or to another package of the same rank."""
    module = module_name(path)
    key, rank = layer_of(module)
    bad = []
    for line, target in imported_modules(path.read_text(), module, path.name == "__init__.py"):
        if target == "infopt":
            continue
        t_key, t_rank = layer_of(target)
        if t_rank > rank or (t_rank == rank and t_key != key):
            bad.append(f"{path.relative_to(SRC.parent)}:{line}: {module} ({key}) imports {target} ({t_key})")
    return bad


def test_no_import_points_up_the_stack() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    bad = [b for f in files for b in upward_imports(f)]
    assert not bad, "imports pointing up the stack:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("where", "code", "flagged"),
    [
        ("models/_x.py", "def f():\n    from infopt.compress import prune\n", True),  # lazy import, still upward
        ("models/_x.py", "import infopt.optimize._run\n", True),
        ("compress/quantize/_x.py", "from infopt.compress.prune import prune\n", True),  # sibling above it
        ("compress/quantize/_x.py", "from ..distill import soft_kl\n", True),  # relative, same rank, not its own
        ("compress/prune/_x.py", "from infopt.compress.distill import soft_kl\n", False),
        ("evaluate/_x.py", "from infopt.models import load_model\n", False),
        ("data/_x.py", "from . import _split\n", False),
    ],
)
def test_the_check_sees_backward_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, code: str,
                                         flagged: bool) -> None:
    fake = tmp_path / "infopt" / where
    fake.parent.mkdir(parents=True)
    fake.write_text(code)
    monkeypatch.setattr(f"{__name__}.SRC", tmp_path / "infopt")
    assert bool(upward_imports(fake)) is flagged
