"""infopt's choice side by side with the tools a user already has, on the default teacher, in one run: torch fp32 and
bf16, Optimum ONNX Runtime dynamic int8, OpenVINO fp32 (and bf16 where the CPU has it), NNCF int8.

    .venv/bin/python benchmarks/peers_classifier.py --infopt runs/x/variants/onnx-int8 --json peers.json
    .venv/bin/python benchmarks/peers_classifier.py --quick          # smoke run: 128 test texts, few rounds

The peers are not infopt dependencies; install them into .venv:

    .venv/bin/python -m pip install openvino nncf optimum==2.1.0
    .venv/bin/python -m pip install --no-deps optimum-onnx      # it pins transformers<4.58; ours is 5
    .venv/bin/python -m pip install --no-deps --target .venv/peers-transformers4 \\
        transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2

Optimum 2.1 / optimum-onnx 0.1 do not import with transformers 5, so the Optimum model is built (export with
Optimum's exporter, ORTQuantizer) in a subprocess that sees transformers 4.57 from .venv/peers-transformers4, and
the model.onnx it writes is timed here with onnxruntime like every other row. Every row uses the same tokenizer
call (tokenization is in every latency), the same texts and the same number of threads. Accuracy: the test split
that `infopt optimize` scores (plan_evaluation). Batch-1 p50 is re-measured in interleaved rounds (every engine
once per round, median over rounds) so background load hits all alike; the ratios use that number. A peer that is
not installed or fails becomes a row with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import transformers
from _machine import cpu_name  # benchmarks/ is on sys.path when run as a script

from infopt.evaluate import interleaved_p50_ms, latencies_ms, predict_logits, throughput
from infopt.models import BUNDLED_MODELS, LoadedModel, OnnxModel, bundled_path, load_model, weights_mb
from infopt.optimize import plan_evaluation

OVERLAY = Path(__file__).resolve().parent.parent / ".venv" / "peers-transformers4"
PACKAGES = ("infopt", "torch", "transformers", "onnxruntime", "optimum", "optimum-onnx", "openvino", "nncf")
OPTIMUM_BUILD = """
import json, sys
from pathlib import Path
import optimum, transformers
from optimum.exporters.onnx import main_export
from optimum.onnxruntime import ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig
src, out, isa = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
main_export(str(src), out / "fp32", task="text-classification", do_validation=False)
config = getattr(AutoQuantizationConfig, isa)(is_static=False)
ORTQuantizer.from_pretrained(out / "fp32").quantize(save_dir=out / "int8", quantization_config=config)
print(json.dumps({"transformers": transformers.__version__, "config": str(config)}))
"""


@dataclass
class Row:
    """One engine: how it was built, its model (None: it failed), its numbers."""

    name: str
    note: str = ""
    model: LoadedModel | None = None
    size_mb: float = float("nan")
    error: str | None = None
    numbers: dict[str, float] = field(default_factory=dict)
    predictions: list[int] = field(default_factory=list)


@dataclass
class Context:
    """What the builders read: the teacher, its HF folder, the CPU, a work folder, calibration texts."""

    teacher: LoadedModel
    folder: Path
    flags: set[str]
    work: Path
    calibration: list[str]
    threads: int


class OpenVinoModel:
    """A compiled OpenVINO model called like a Hugging Face one: `model(input_ids=...)` gives `.logits`."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.names = [i.get_any_name() for i in compiled.inputs]
        self.request = compiled.create_infer_request()

    def __call__(self, **inputs: torch.Tensor) -> SimpleNamespace:
        feed = {n: inputs[n].numpy() for n in self.names if n in inputs}
        if "token_type_ids" in self.names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        out = self.request.infer(feed)[self.compiled.output(0)]
        return SimpleNamespace(logits=torch.from_numpy(np.array(out)))


def _wrap(ctx: Context, engine: Any) -> LoadedModel:
    return LoadedModel(engine, ctx.teacher.tokenizer, ctx.teacher.manifest)


def _cpu_flags() -> set[str]:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    line = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def _bf16_isa(flags: set[str]) -> str | None:
    return "AMX" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else None


def build_torch_bf16(ctx: Context) -> tuple[LoadedModel, float, str]:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(ctx.folder, dtype=torch.bfloat16).eval()
    model.save_pretrained(ctx.work / "torch-bf16")
    isa = _bf16_isa(ctx.flags) or "no bf16 instructions: emulated"
    return _wrap(ctx, model), weights_mb(ctx.work / "torch-bf16"), f"weights .to(bfloat16), {isa}"


def build_optimum_int8(ctx: Context) -> tuple[LoadedModel, float, str]:
    isa = "avx512_vnni" if "avx512_vnni" in ctx.flags else "avx2"
    env = dict(os.environ)
    if OVERLAY.is_dir():  # transformers 4.57 for optimum-onnx, seen by the build only
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(OVERLAY), env.get("PYTHONPATH")) if p)
    out = ctx.work / "optimum"
    proc = subprocess.run([sys.executable, "-c", OPTIMUM_BUILD, str(ctx.folder), str(out), isa],
                          capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        last = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        hint = "" if OVERLAY.is_dir() else f" (no {OVERLAY.name} overlay: see this script's docstring)"
        raise RuntimeError(f"Optimum build failed: {last[0][:300]}{hint}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    path = out / "int8" / "model_quantized.onnx"
    note = f"AutoQuantizationConfig.{isa}(is_static=False): {info['config']}; exported with transformers " \
           f"{info['transformers']}"
    return _wrap(ctx, OnnxModel(path, threads=ctx.threads)), path.stat().st_size / 1e6, note


def _ov_compile(ctx: Context, xml: Path, hint: str) -> LoadedModel:
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": ctx.threads, "NUM_STREAMS": 1,
              "PERFORMANCE_HINT": "LATENCY"}
    return _wrap(ctx, OpenVinoModel(ov.Core().compile_model(ov.Core().read_model(xml), "CPU", config)))


def _ov_size(xml: Path) -> float:
    return (xml.stat().st_size + xml.with_suffix(".bin").stat().st_size) / 1e6


def _ov_ir(ctx: Context) -> Path:
    """The teacher converted from PyTorch (ov.convert_model) and saved as fp32 IR; built once."""
    import openvino as ov

    xml = ctx.work / "openvino" / "model.xml"
    if not xml.exists():
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(ctx.folder).eval()
        example = dict(ctx.teacher.encode(["a first example", "and a second, longer example text"]))
        ov.save_model(ov.convert_model(model, example_input=example), xml, compress_to_fp16=False)
    return xml


def _ov_bf16_ok(ctx: Context) -> str:
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise RuntimeError("this CPU has no bf16 support in OpenVINO (needs AMX or avx512_bf16)")
    return _bf16_isa(ctx.flags) or "reported by OpenVINO"


def build_ov_fp32(ctx: Context) -> tuple[LoadedModel, float, str]:
    xml = _ov_ir(ctx)
    return _ov_compile(ctx, xml, "f32"), _ov_size(xml), "ov.convert_model from PyTorch, INFERENCE_PRECISION_HINT f32"


def build_ov_bf16(ctx: Context) -> tuple[LoadedModel, float, str]:
    isa = _ov_bf16_ok(ctx)
    xml = _ov_ir(ctx)
    return _ov_compile(ctx, xml, "bf16"), _ov_size(xml), f"same IR, INFERENCE_PRECISION_HINT bf16 ({isa})"


def _nncf_ir(ctx: Context) -> Path:
    import nncf
    import openvino as ov

    xml = ctx.work / "nncf" / "model.xml"
    if not xml.exists():
        fp32 = ov.Core().read_model(_ov_ir(ctx))
        items = [{k: v.numpy() for k, v in ctx.teacher.encode([t]).items()} for t in ctx.calibration]
        quantized = nncf.quantize(fp32, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(items))
        ov.save_model(quantized, xml, compress_to_fp16=False)
    return xml


def build_nncf_int8(ctx: Context) -> tuple[LoadedModel, float, str]:
    xml = _nncf_ir(ctx)
    note = f"nncf.quantize(ModelType.TRANSFORMER, {len(ctx.calibration)} train texts), hint f32"
    return _ov_compile(ctx, xml, "f32"), _ov_size(xml), note


def build_nncf_int8_bf16(ctx: Context) -> tuple[LoadedModel, float, str]:
    isa = _ov_bf16_ok(ctx)
    xml = _nncf_ir(ctx)
    return _ov_compile(ctx, xml, "bf16"), _ov_size(xml), f"same int8 IR, hint bf16 ({isa})"


PEERS: dict[str, Callable[[Context], tuple[LoadedModel, float, str]]] = {
    "torch bf16": build_torch_bf16,
    "Optimum ORT dynamic int8": build_optimum_int8,
    "OpenVINO fp32": build_ov_fp32,
    "OpenVINO bf16": build_ov_bf16,
    "NNCF int8": build_nncf_int8,
    "NNCF int8 + bf16": build_nncf_int8_bf16,
}


def _reason(e: BaseException) -> str:
    if isinstance(e, ImportError):
        return f"not installed ({e.name or str(e).splitlines()[0]})"
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def build_rows(ctx: Context, infopt_dirs: list[Path], skip: set[str]) -> list[Row]:
    rows = [Row("torch fp32", "infopt.models.load_model (baseline)", ctx.teacher, weights_mb(ctx.folder))]
    for name, builder in PEERS.items():
        if name in skip:
            continue
        row = Row(name)
        t0 = time.perf_counter()
        try:
            row.model, row.size_mb, row.note = builder(ctx)
        except Exception as e:  # a peer that fails is a row with the reason, not a crash
            row.error = _reason(e)
        print(f"  built {name} in {time.perf_counter() - t0:.1f} s" + (f": {row.error}" if row.error else ""),
              flush=True)
        rows.append(row)
    for folder in infopt_dirs:
        row = Row(f"infopt {folder.name}", f"infopt.models.load_model({folder})")
        try:
            row.model, row.size_mb = load_model(folder), weights_mb(folder)
        except Exception as e:
            row.error = _reason(e)
        rows.append(row)
    return rows


def score(rows: list[Row], texts: list[str], labels: list[int]) -> None:
    """Accuracy on the test texts and prediction flips against torch fp32; a row that fails here is dropped."""
    for row in rows:
        if row.model is None:
            continue
        try:
            row.predictions = predict_logits(row.model, texts).float().argmax(-1).tolist()
            row.model.predict(texts[:1])  # batch 1 works too
        except Exception as e:
            row.model, row.error = None, _reason(e)
            continue
        row.numbers["accuracy"] = 100 * float(np.mean([p == y for p, y in zip(row.predictions, labels, strict=True)]))
        row.numbers["n"] = len(labels)
        base = rows[0].predictions
        row.numbers["flips"] = sum(p != b for p, b in zip(row.predictions, base, strict=True))


def time_rows(rows: list[Row], texts: list[str], quick: bool, rounds: int) -> None:
    """p50 / p95 of one batch-1 run each, then interleaved batch-1 p50 and batch-32 items/s (medians of rounds)."""
    live = {r.name: r for r in rows if r.model is not None}
    models = {name: r.model for name, r in live.items() if r.model is not None}
    for row in live.values():
        assert row.model is not None
        lat = latencies_ms(row.model, texts, iters=40 if quick else 300, budget_s=1.0 if quick else 6.0)
        row.numbers["p50_ms"], row.numbers["p95_ms"] = (float(np.percentile(lat, q)) for q in (50, 95))
    for name, p50 in interleaved_p50_ms(models, texts, rounds=rounds, iters=20 if quick else 80).items():
        live[name].numbers["p50_interleaved_ms"] = p50
    per_round: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            per_round[name].append(throughput(model, texts, 32, batches=2 if quick else 6))
    for name, values in per_round.items():
        live[name].numbers["items_per_s"] = float(np.median(values))


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or x != x else format(x, spec)


def report(rows: list[Row], threads: int) -> list[dict[str, Any]]:
    """Print the table; return the rows as JSON-ready dicts with the ratios against torch fp32."""
    base = rows[0].numbers
    out = []
    print(f"\n{threads} threads per engine; speed-up = torch fp32 interleaved batch-1 p50 / the row's; "
          "tokenization included")
    print("| engine | acc % (n) | flips | b1 p50 ms | b1 p95 ms | b1 p50 interleaved | speed-up | items/s b32 "
          "| x | MB | x smaller |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        n = row.numbers
        ratios = {
            "speedup_b1": base.get("p50_interleaved_ms", float("nan")) / n.get("p50_interleaved_ms", float("nan")),
            "throughput_ratio": n.get("items_per_s", float("nan")) / base.get("items_per_s", float("nan")),
            "size_ratio": rows[0].size_mb / row.size_mb,
            "accuracy_delta": n.get("accuracy", float("nan")) - base.get("accuracy", float("nan")),
        }
        values = {"size_mb": row.size_mb, **n, **ratios}
        out.append({"engine": row.name, "note": row.note, "error": row.error,
                    **{k: v for k, v in values.items() if v == v}})  # NaN (not measured) left out
        if row.error:
            print(f"| {row.name} | failed: {row.error} |")
            continue
        print(f"| {row.name} | {_fmt(n.get('accuracy'), '.2f')} ({int(n.get('n', 0))}) | {int(n.get('flips', 0))} "
              f"| {_fmt(n.get('p50_ms'), '.2f')} | {_fmt(n.get('p95_ms'), '.2f')} "
              f"| {_fmt(n.get('p50_interleaved_ms'), '.2f')} | {_fmt(ratios['speedup_b1'], '.2f')}x "
              f"| {_fmt(n.get('items_per_s'), '.0f')} | {_fmt(ratios['throughput_ratio'], '.2f')}x "
              f"| {_fmt(row.size_mb, '.1f')} | {_fmt(ratios['size_ratio'], '.1f')}x |")
    print("\nhow each row was built:")
    for row in rows:
        print(f"  {row.name}: {row.error or row.note}")
    if n_test := int(base.get("n", 0)):
        print(f"\none test review is {100 / n_test:.2f} accuracy points (n = {n_test}); 'flips' counts the reviews "
              "whose prediction differs from torch fp32")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6-rt", help="the teacher: a bundled name or an HF folder")
    parser.add_argument("--infopt", action="append", type=Path, default=[], metavar="DIR",
                        help="a model folder infopt wrote (a variant or --export folder); repeat for more")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, help="interleaved timing rounds (default 7, --quick 2)")
    parser.add_argument("--calibration", type=int, help="NNCF calibration texts from the train split (default 300)")
    parser.add_argument("--skip", default="", help=f"comma-separated peers to leave out: {', '.join(PEERS)}")
    parser.add_argument("--quick", action="store_true", help="smoke run: 128 test texts, short timings")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the rows, CPU and versions here")
    args = parser.parse_args()
    if missing := [str(f) for f in args.infopt if not f.is_dir()]:
        parser.error(f"--infopt: not a folder: {', '.join(missing)}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if unknown := skip - set(PEERS):
        parser.error(f"--skip: unknown {', '.join(sorted(unknown))} (known: {', '.join(PEERS)})")
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    rounds = args.rounds or (2 if args.quick else 7)
    versions = {pkg: _version(pkg) for pkg in PACKAGES}
    print(f"CPU: {cpu_name()}; {args.threads} threads per engine")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))

    teacher = load_model(args.model)
    if teacher.task != "classification":
        parser.error(f"{args.model} is a {teacher.task} model; this benchmark is for classifiers")
    folder = bundled_path(args.model) if args.model in BUNDLED_MODELS else Path(args.model)
    plan = plan_evaluation(teacher, None)
    assert plan.train is not None
    texts, labels = plan.spec.texts, plan.spec.labels
    if args.quick:
        texts, labels = texts[:128], labels[:128]
    calibration = plan.train.texts[: args.calibration or (64 if args.quick else 300)]
    speed_texts = plan.spec.speed_texts or texts[:200]
    print(f"teacher {args.model} ({folder}); test split {plan.data_name}: {len(texts)} texts; "
          f"timing texts: {len(speed_texts)}")

    with tempfile.TemporaryDirectory(prefix="infopt-peers-") as tmp:
        ctx = Context(teacher, folder, _cpu_flags(), Path(tmp), calibration, args.threads)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):  # the exporters' warnings
            rows = build_rows(ctx, args.infopt, skip)
        print("scoring the test split ...", flush=True)
        score(rows, texts, labels)
        if rows[0].model is None:
            raise SystemExit(f"the torch fp32 baseline failed: {rows[0].error}")
        print(f"timing {sum(r.model is not None for r in rows)} engines ({rounds} interleaved rounds) ...", flush=True)
        time_rows(rows, speed_texts, args.quick, rounds)
        table = report(rows, args.threads)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "threads": args.threads, "versions": versions,
                                         "model": args.model, "quick": args.quick, "rounds": rounds,
                                         "rows": table}, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
