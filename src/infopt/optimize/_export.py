"""`--export DIR`: the chosen variant as a folder plain transformers / ONNX Runtime (and `infopt serve`) loads, with
the `serve.toml` that matches it:

    DIR/model/         the variant folder, as infopt saved it (config, weights, tokenizer, infopt.json)
    DIR/serve.toml     `infopt serve --config DIR/serve.toml` serves it
    DIR/export.json    what was exported, from which run, with its measured numbers

DIR must be new or empty, or an earlier infopt export with `overwrite` (`infopt._atomic`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from infopt._atomic import atomic_dir, check_output
from infopt.errors import UserError
from infopt.evaluate import RunResult

__all__ = ["export_variant", "serve_toml"]


def _served_name(model: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model.rstrip("/\\")).name).strip("-.")
    return name or "model"


def _quote(text: str) -> str:
    return json.dumps(text)  # a TOML basic string is a JSON string


def serve_toml(name: str, path: Path, max_batch_size: int, threads: int | None, note: str,
               latency_threads: int | None = None) -> str:
    """The `infopt serve --config` file serving the model folder `path` under `name` (with `latency_threads` as its
    session's threads when fewer threads were faster at batch 1)."""
    lines = [f"# {line}" for line in note.splitlines()]
    if threads:
        lines.append(f"# measured with {threads} intra-op threads; `infopt serve` uses torch's default")
    model = ["[[models]]", f"name = {_quote(name)}", f"path = {_quote(str(path))}"]
    if latency_threads:
        lines.append(f"# batch 1 was fastest on {latency_threads} thread(s): for throughput at high load, drop "
                     "`threads` (all cores)")
        model.append(f"threads = {latency_threads}")
    lines += ["", *model, "", "[batching]", f"max_batch_size = {max_batch_size}", "max_wait_ms = 0.0", ""]
    return "\n".join(lines)


def export_variant(run: RunResult, report: Path, target: Path, overwrite: bool = False) -> Path:
    """Copy the run's chosen variant (from the report folder `report`) into `target` with its serve.toml."""
    if run.chosen is None:
        raise UserError("The run chose no variant, so there is nothing to export.", "relax the requirements.")
    target = check_output(target, "export", overwrite)
    chosen = next(v for v in run.variants if v.name == run.chosen)
    source = report / chosen.path
    with atomic_dir(target, "export", overwrite) as tmp:
        shutil.copytree(source, tmp / "model")
        note = (f"written by infopt optimize: {chosen.name} (recipe {chosen.recipe or chosen.name}) of {run.model}\n"
                f"{run.recommendation}")
        (tmp / "serve.toml").write_text(serve_toml(_served_name(run.model), Path("model"),
                                                   chosen.speed.batch_size, chosen.speed.threads, note,
                                                   chosen.speed.latency_threads if run.requirements.get("priority")
                                                   in ("latency", "cost") else None))
        facts = {"model": run.model, "variant": chosen.name, "recipe": chosen.recipe, "method": chosen.method,
                 "quality": chosen.quality, "p50_ms": chosen.speed.p50_ms,
                 "interleaved_p50_ms": chosen.speed.interleaved_p50_ms, "throughput": chosen.speed.throughput,
                 "batch_size": chosen.speed.batch_size, "size_mb": chosen.size_mb, "report": str(report.resolve()),
                 "recommendation": run.recommendation, "machine": run.machine.get("summary", "")}
        (tmp / "export.json").write_text(json.dumps(facts, indent=2))
    return target
