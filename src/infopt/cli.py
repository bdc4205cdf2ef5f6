"""The `infopt` command: thin argument parsing over the library."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from infopt.errors import InfoptError

__all__ = ["main"]


def _data_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from infopt.data import DataConfig

    if not args.data:
        if args.text_column or args.label_column:
            raise InfoptError("--text-column / --label-column were given without --data.", "add --data FILE.")
        return None
    return DataConfig(args.data, args.text_column, args.label_column, args.limit, args.seed)


def _bench_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from infopt.evaluate import BenchConfig

    return BenchConfig(threads=args.threads, batch_size=args.batch_size)


def _optimize_config(args: argparse.Namespace, schemes: tuple[str, ...] | None):  # type: ignore[no-untyped-def]
    from infopt.optimize import OptimizeConfig

    return OptimizeConfig(
        model=args.model,
        data=_data_config(args),
        output=Path(args.output) if args.output else None,
        schemes=schemes,
        bench=_bench_config(args),
        eval_limit=args.eval_limit,
        seed=args.seed,
    )


def _run_and_report(args: argparse.Namespace, schemes: tuple[str, ...] | None) -> None:
    from rich.console import Console

    from infopt.evaluate import print_table
    from infopt.optimize import optimize

    console = Console(stderr=True)
    run, folder = optimize(_optimize_config(args, schemes), console)
    print_table(run, Console())
    Console().print(f"report: {folder / 'report.md'}")


def cmd_models(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from infopt.models import BUNDLED_MODELS

    table = Table(title="bundled models (any Hugging Face model folder works too)")
    for col in ("name", "task", "ready", "what it is"):
        table.add_column(col)
    for m in BUNDLED_MODELS.values():
        table.add_row(m.name, m.task, "yes" if m.is_cached() else "built on first use", m.about)
    Console().print(table)


def cmd_optimize(args: argparse.Namespace) -> None:
    schemes = tuple(s.strip() for s in args.schemes.split(",") if s.strip()) if args.schemes else None
    _run_and_report(args, schemes)


def cmd_bench(args: argparse.Namespace) -> None:
    _run_and_report(args, ())


def cmd_quantize(args: argparse.Namespace) -> None:
    from infopt.compress.quantize import config_from_name, quantize
    from infopt.models import load_model, save_model
    from infopt.optimize import plan_evaluation

    overrides = {"group_size": args.group_size} if args.group_size else {}
    config = config_from_name(args.scheme, **overrides)
    model = load_model(args.model)
    calibration = plan_evaluation(model, _optimize_config(args, None)).calibration if args.scheme.startswith(
        "onnx-static"
    ) else []
    saved = save_model(quantize(model, config, calibration=calibration), args.output)
    print(f"saved {saved.manifest.name} ({saved.manifest.method}) to {args.output}, fingerprint {saved.manifest.fingerprint}")


def _add_common(p: argparse.ArgumentParser, output_required: bool = False) -> None:
    p.add_argument("--model", default="minilm-l6-rt", help="bundled model name or model folder (default: minilm-l6-rt)")
    p.add_argument("--data", help="bundled dataset (rotten-tomatoes, tweets, news) or a .csv / .jsonl file")
    p.add_argument("--text-column", help="column holding the text (user files)")
    p.add_argument("--label-column", help="column holding the label (user files)")
    p.add_argument("--limit", type=int, help="use at most this many examples of the data")
    p.add_argument("--eval-limit", type=int, help="score quality on at most this many test examples")
    p.add_argument("--output", required=output_required, help="output folder")
    p.add_argument("--threads", type=int, help="intra-op threads for timing (default: torch's default)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size of the throughput measurement")
    p.add_argument("--seed", type=int, default=0, help="seed of splits and sampling")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infopt", description="Make models faster, smaller and cheaper; measured.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the bundled models").set_defaults(func=cmd_models)
    p = sub.add_parser("optimize", help="measure the model and its optimized variants side by side")
    _add_common(p)
    p.add_argument("--schemes", help="comma-separated quantization schemes (default: all that apply)")
    p.set_defaults(func=cmd_optimize)
    p = sub.add_parser("bench", help="measure one model: quality, latency, throughput, size, memory")
    _add_common(p)
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("quantize", help="quantize a model and save the variant")
    _add_common(p, output_required=True)
    p.add_argument("--scheme", required=True, help="quantization scheme, e.g. dynamic-int8, onnx-int8, weight-int4")
    p.add_argument("--group-size", type=int, help="group size of weight-int4")
    p.set_defaults(func=cmd_quantize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line and return 2."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except InfoptError as e:
        print(f"infopt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("infopt: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
