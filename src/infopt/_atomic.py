"""Writing outputs safely: check the target before any work, write under a temporary name, rename into place.

infopt never deletes or replaces what it did not write. Every folder it writes carries a marker naming its kind
(`model`, `report`, ...); an existing target is replaced only when it holds an earlier infopt output of the same
kind and the caller asked to overwrite; a file is never replaced by a folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from infopt.errors import UserError

__all__ = ["MARKER_FILE", "DiskFull", "atomic_dir", "atomic_file", "check_output", "disk_full", "output_kind"]

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


class DiskFull(UserError):
    """A write failed because the disk is full (or over quota): exit 2, and nothing half-written is left."""


def disk_full(e: BaseException, target: Path) -> DiskFull | None:
    """The user error for a write to `target` that failed because its disk is full (None for any other error).
    Libraries that wrap the OS error (safetensors' SafetensorError) are recognised by its text."""
    full = isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
    if not full and not any(s in str(e) for s in ("No space left on device", "os error 28", "Disk quota exceeded")):
        return None
    return DiskFull(
        f"The disk holding {target.parent} is full (no space left on device); nothing was written to {target}.",
        "free some space on that disk, or write to another one (e.g. another --output).",
    )


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


def check_output(target: str | Path, kind: str, overwrite: bool = False, replaces: tuple[str, ...] = ()) -> Path:
    """Refuse, before any work, a target that must not be written; returns it as a Path.

    Allowed: a new path in a writable folder, an empty folder, an infopt output of a kind in `replaces`, or (with
    `overwrite`) an earlier infopt output of the same kind. Refused: a file, a folder holding anything else,
    another kind of infopt output.
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
        if found != kind and found not in replaces:
            raise UserError(
                f"The output {target} holds an infopt {found}, not a {kind}.", "choose another folder for --output."
            )
        if not overwrite and found not in replaces:
            raise UserError(
                f"The output {target} holds an earlier infopt {kind}.",
                "pass --overwrite to replace it, or choose another folder for --output.",
            )
    _probe_writable(target.parent if not target.is_dir() else target)
    return target


@contextlib.contextmanager
def atomic_dir(target: str | Path, kind: str = "model", overwrite: bool = False, replaces: tuple[str, ...] = (),
               interrupted: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it takes `target`'s place, on error it is removed.

    The target is checked as in `check_output` both before and after the work (so a folder that appeared in
    the meantime is not replaced either). With `interrupted` (a kind), a KeyboardInterrupt keeps the work so far:
    the folder takes `target`'s place marked as that kind (the caller leaves only finished files in it). A full
    disk is one UserError naming it.
    """
    target = check_output(target, kind, overwrite, replaces)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        (tmp / MARKER_FILE).write_text(json.dumps({"kind": kind}))
        check_output(target, kind, overwrite, replaces)
    except KeyboardInterrupt:
        if interrupted is None or not _keep(tmp, target, interrupted, overwrite, (*replaces, kind)):
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if (full := disk_full(e, target)) is not None:  # the outermost folder being written is named
            raise full from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap(tmp, target)


def _keep(tmp: Path, target: Path, kind: str, overwrite: bool, replaces: tuple[str, ...]) -> bool:
    """Put the interrupted work in `tmp` in `target`'s place, marked as `kind`; False when it cannot be kept."""
    try:
        (tmp / MARKER_FILE).write_text(json.dumps({"kind": kind}))
        check_output(target, kind, overwrite, replaces)
        _swap(tmp, target)
    except (OSError, UserError):
        return False
    return True


def _swap(tmp: Path, target: Path) -> None:
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
    except Exception as e:
        Path(tmp).unlink(missing_ok=True)
        if (full := disk_full(e, path)) is not None:
            raise full from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
