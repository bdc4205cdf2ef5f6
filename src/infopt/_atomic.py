"""Writing outputs safely: check the target before any work, write under a temporary name, rename into place.

infopt never deletes or replaces what it did not write. Every folder it writes carries a marker naming its kind
(`model`, `report`, ...); an existing target is replaced only when it holds an earlier infopt output of the same
kind and the caller asked to overwrite; a file is never replaced by a folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from infopt.errors import UserError

__all__ = ["MARKER_FILE", "atomic_dir", "atomic_file", "check_output", "output_kind"]

MARKER_FILE = ".infopt-output"
_LEGACY_MARKERS = {"infopt.json": "model", "results.json": "report"}
"""Folders written before the marker existed: a model folder has its manifest, a report folder its results."""


def output_kind(folder: Path) -> str | None:
    """The kind of infopt output `folder` holds, or None if infopt did not write it."""
    marker = folder / MARKER_FILE
    if marker.is_file():
        try:
            return str(json.loads(marker.read_text())["kind"])
        except (ValueError, KeyError, TypeError, OSError):
            return None
    for name, kind in _LEGACY_MARKERS.items():
        if (folder / name).is_file():
            return kind
    return None


def _probe_writable(parent: Path) -> None:
    """Create (then remove) a temporary folder in `parent`, creating missing ancestors only for the probe."""
    missing = []
    p = parent
    while not p.exists():
        missing.append(p)
        p = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=".infopt-probe-", dir=parent))
    except OSError as e:
        raise UserError(
            f"The output {parent} cannot be written ({e.strerror or type(e).__name__}).",
            "choose an --output in a folder you can write to.",
        ) from None
    finally:
        for folder in missing:
            with contextlib.suppress(OSError):
                folder.rmdir()


def check_output(target: str | Path, kind: str, overwrite: bool = False) -> Path:
    """Refuse, before any work, a target that must not be written; returns it as a Path.

    Allowed: a new path in a writable folder, an empty folder, or (with `overwrite`) an earlier infopt output
    of the same kind. Refused: a file, a folder holding anything else, another kind of infopt output.
    """
    target = Path(target).expanduser()
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UserError(
            f"The output {target} is a file; infopt never replaces a file with its output.",
            "choose a folder path that does not exist yet.",
        )
    if target.is_dir() and any(target.iterdir()):
        found = output_kind(target)
        if found is None:
            example = sorted(p.name for p in target.iterdir())[0]
            raise UserError(
                f"The output {target} already holds files infopt did not write (e.g. {example}); "
                "infopt never deletes them.",
                "choose a new folder for --output.",
            )
        if found != kind:
            raise UserError(
                f"The output {target} holds an infopt {found}, not a {kind}.", "choose another folder for --output."
            )
        if not overwrite:
            raise UserError(
                f"The output {target} holds an earlier infopt {kind}.",
                "pass --overwrite to replace it, or choose another folder for --output.",
            )
    _probe_writable(target.parent if not target.is_dir() else target)
    return target


@contextlib.contextmanager
def atomic_dir(target: str | Path, kind: str = "model", overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it takes `target`'s place, on error it is removed.

    The target is checked as in `check_output` both before and after the work (so a folder that appeared in
    the meantime is not replaced either).
    """
    target = check_output(target, kind, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        (tmp / MARKER_FILE).write_text(json.dumps({"kind": kind}))
        check_output(target, kind, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old-{tmp.name[-8:]}")
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` (a cache file), on error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
