"""The report folder: results.json, report.md and report.html; `read_results` loads it back for re-rendering.

The views live beside it: `_report_doc` (the content), `_report_md`, `_report_html`, `_plots`, `_table` (terminal).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from infopt._atomic import disk_full
from infopt.errors import UserError
from infopt.evaluate._report_facts import verdicts
from infopt.evaluate._report_html import render_html
from infopt.evaluate._report_md import render_markdown
from infopt.evaluate._results import RunResult

__all__ = ["environment", "read_results", "rerender_report", "verdicts", "write_report"]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(seed: int) -> dict[str, object]:
    """Versions, seed, CPU and threads: what a reader needs to reproduce the numbers."""
    versions = {}
    for pkg in ("infopt", "torch", "transformers", "onnxruntime", "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "python": sys.version.split()[0],
        "versions": versions,
        "seed": seed,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def write_report(run: RunResult, folder: Path, results: bool = True) -> None:
    """Write results.json (unless `results` is False), report.md and report.html into `folder`, each atomically."""
    files = {"report.md": render_markdown(run), "report.html": render_html(run)}
    if results:
        files = {"results.json": run.to_json(), **files}
    for name, text in files.items():
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)


def read_results(folder: Path) -> RunResult:
    """The RunResult in `folder`/results.json; a missing or unreadable file is one UserError line."""
    path = Path(folder) / "results.json"
    fix = "pass the folder an `infopt optimize` run wrote (it holds results.json), or run `infopt optimize` again."
    try:
        if not Path(folder).is_dir():
            raise UserError(f"{folder} is not a folder.", fix)
        if not path.is_file():
            raise UserError(f"{folder} holds no results.json.", fix)
    except OSError as e:  # a name too long, a loop of links
        raise UserError(f"{folder} cannot be read ({e.strerror or type(e).__name__}).", fix) from None
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} cannot be read ({type(e).__name__}: {' '.join(str(e).split())}).", fix) from None
    variants = data.get("variants") if isinstance(data, dict) else None
    if not isinstance(variants, list) or not all(isinstance(v, dict) and isinstance(v.get("speed"), dict)
                                                 for v in variants):
        raise UserError(f"{path} is not an infopt results file (no list of variants with their speed).", fix)
    if not variants:
        raise UserError(f"{path} holds no variants (not even the baseline).", fix)
    try:
        return RunResult.from_json(text)
    except (TypeError, KeyError, ValueError) as e:
        raise UserError(f"{path} is not an infopt results file ({type(e).__name__}: {' '.join(str(e).split())}).",
                        fix) from None


def rerender_report(folder: Path) -> RunResult:
    """Write report.md and report.html again from `folder`/results.json (which is left as it is)."""
    run = read_results(folder)
    try:
        write_report(run, Path(folder), results=False)
    except OSError as e:
        if (full := disk_full(e, Path(folder) / "report.md")) is not None:
            raise full from None
        raise UserError(f"The report in {folder} cannot be written ({e.strerror or type(e).__name__}).",
                        "make the folder writable, or copy it somewhere you can write to.") from None
    return run
