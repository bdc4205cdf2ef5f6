"""`infopt optimize --resume`: the journal of a run's finished variants, kept in its folder, so that an interrupted
run (Ctrl-C, SIGTERM) continues from its last finished variant.

    OUTPUT/.infopt-output        {"kind": "report-interrupted"} while the run is unfinished
    OUTPUT/progress.json         what the measurements depend on, and each finished variant: its result, seconds
    OUTPUT/variants/NAME/        the finished variants' model folders (the unfinished one is removed)

A resumed run hard-links (or copies) the finished folders into its new folder, reuses their results and counts
their original seconds against the time budget, so the search goes on as if it had not stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from infopt._atomic import atomic_file, output_kind
from infopt.errors import UserError
from infopt.evaluate import SpeedResult, VariantResult

__all__ = ["INTERRUPTED", "JOURNAL", "Interrupted", "Journal", "run_context"]

INTERRUPTED = "report-interrupted"
"""The kind of an interrupted run's folder (`infopt._atomic` markers)."""
JOURNAL = "progress.json"


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT / SIGTERM; the message says how to resume it."""

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.message, self.signum = message, signum


def run_context(**parts: Any) -> str:
    """A hash of what a run's measurements depend on (model fingerprint, data, bench, seed, ...)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:20]


def _to_result(d: dict[str, Any]) -> VariantResult:
    return VariantResult(**{**d, "speed": SpeedResult(**d["speed"])})


def _link_tree(src: Path, dst: Path) -> None:
    """Copy the folder `src` to `dst`, hard-linking files where the filesystem allows (models are never edited)."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


class Journal:
    """The finished variants of this run (those carried over from the interrupted one included), kept in `folder`."""

    def __init__(self, folder: Path, context: str) -> None:
        self.folder, self.context = folder, context
        self.finished: dict[str, dict[str, Any]] = {}
        """Variant name -> {"result": asdict(VariantResult), "seconds": float, "path": str}."""
        self.previous: dict[str, dict[str, Any]] = {}
        """What the interrupted run had finished (not yet reused in this one)."""
        self.reused: list[str] = []

    @staticmethod
    def check(target: Path, context: str) -> dict[str, dict[str, Any]]:
        """The finished variants of the interrupted run in `target`; a run with other settings is a UserError."""
        if not target.is_dir() or not any(target.iterdir()):
            return {}
        if output_kind(target) != INTERRUPTED:
            raise UserError(f"The output {target} holds a finished infopt report: there is nothing to resume.",
                            "pass --overwrite to run again, or choose a new --output.")
        try:
            data = json.loads((target / JOURNAL).read_text())
            variants = {str(k): dict(v) for k, v in data["variants"].items()}
            saved_context = data["context"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"The interrupted run in {target} has no readable {JOURNAL}.",
                            "pass --overwrite instead of --resume to start again.") from None
        if saved_context != context:
            raise UserError(f"The interrupted run in {target} measured another model, data, seed or bench settings.",
                            "resume with the flags of the interrupted run, or pass --overwrite to start again.")
        return {k: v for k, v in variants.items() if (target / v.get("path", "-")).is_dir()}

    def adopt(self, target: Path, previous: dict[str, dict[str, Any]]) -> None:
        """Carry the interrupted run's finished folders into this run's folder (reused when their recipe comes up)."""
        for entry in previous.values():
            dst = self.folder / entry["path"]
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                _link_tree(target / entry["path"], dst)
        self.previous = dict(previous)

    def take(self, name: str) -> tuple[VariantResult, float] | None:
        """The interrupted run's result of `name` and its seconds (and it becomes finished in this run), or None."""
        entry = self.previous.pop(name, None)
        if entry is None:
            return None
        try:
            result = _to_result(entry["result"])
            seconds = float(entry["seconds"])
        except (KeyError, TypeError, ValueError):
            return None
        self.reused.append(name)
        self._record(name, entry)
        return result, seconds

    def add(self, name: str, result: VariantResult, seconds: float) -> None:
        """Record a variant finished in this run."""
        entry = {"result": asdict(dataclasses.replace(result, notes=list(result.notes))), "seconds": seconds,
                 "path": result.path}
        self._record(name, entry)

    def _record(self, name: str, entry: dict[str, Any]) -> None:
        self.finished[name] = entry
        self.write()

    def write(self) -> None:
        """Write the journal: what was finished in this run, and what the interrupted one had (not yet reused)."""
        data = {"context": self.context, "variants": {**self.previous, **self.finished}}
        with atomic_file(self.folder / JOURNAL) as tmp:
            tmp.write_text(json.dumps(data))

    def prune(self) -> None:
        """Remove the variant folders that are not finished (the one being built or measured when interrupted)."""
        keep = {Path(e["path"]).name for e in (*self.finished.values(), *self.previous.values())}
        variants = self.folder / "variants"
        if variants.is_dir():
            for sub in variants.iterdir():
                if sub.name not in keep:
                    shutil.rmtree(sub, ignore_errors=True) if sub.is_dir() else sub.unlink(missing_ok=True)
        for tmp in self.folder.glob(".*.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        self.write()
