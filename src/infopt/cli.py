"""The `infopt` command: thin argument parsing over the library."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from infopt._cli_parser import Parser as _Parser
from infopt._cli_parser import add_load_flags
from infopt._cli_process import WRITERS, drop_stdout, on_sigterm, run_ranked
from infopt._cli_serving import add_serving_commands
from infopt.errors import InfoptError, UserError

__all__ = ["main"]


def _data_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from infopt.data import DataConfig

    if not args.data:
        if args.text_column or args.label_column:
            raise UserError("--text-column / --label-column were given without --data.", "add --data FILE.")
        return None
    return DataConfig(args.data, args.text_column, args.label_column, args.limit, args.seed)


def _eval_data_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from infopt.data import DataConfig

    if not args.eval_data:
        return None
    return DataConfig(args.eval_data, args.eval_text_column or args.text_column,
                      args.eval_label_column or args.label_column)


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


def _weights(text: str | None) -> tuple[float, ...] | None:
    """`--teacher-weights 0.7,0.3` as numbers (None: not given); anything else is one clear error."""
    if not text:
        return None
    try:
        return tuple(float(w) for w in _names(text))
    except ValueError:
        raise UserError(f"--teacher-weights {text!r} is not a comma-separated list of numbers.",
                        "pass one number per teacher, e.g. --teacher-weights 0.7,0.3.") from None


def _run_and_report(args: argparse.Namespace, recipes: tuple[str, ...] | None) -> None:
    from rich.console import Console

    from infopt.evaluate import BenchConfig, print_table
    from infopt.optimize import OptimizeConfig, optimize

    config = OptimizeConfig(
        model=args.model, data=_data_config(args), output=Path(args.output) if args.output else None, recipes=recipes,
        bench=BenchConfig(threads=args.threads, batch_size=args.batch_size), eval_limit=args.eval_limit,
        seed=args.seed, overwrite=args.overwrite,
    )
    run, folder = optimize(config, Console(stderr=True))
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


_REQUIREMENT_FLAGS = ("priority", "max_accuracy_drop", "max_p95_ms", "p95_batch_size", "min_throughput",
                      "max_size_mb", "max_memory_mb", "time_budget", "price_per_hour")


class NoVariantMeets(InfoptError):
    """The search (or the requirements given) found no variant that meets every bound; the report was written."""

    exit_code = 3


def cmd_optimize(args: argparse.Namespace) -> None:
    from rich.console import Console

    from infopt.evaluate import BenchConfig, print_table
    from infopt.optimize import OptimizeConfig, Requirements, optimize, parse_duration

    flags = {k: getattr(args, k) for k in _REQUIREMENT_FLAGS}
    if flags["time_budget"] is not None:
        flags["time_budget_s"] = parse_duration(flags["time_budget"])
    del flags["time_budget"]
    requirements = Requirements.from_toml(args.requirements, **flags)
    recipes = _names(args.recipes) if args.recipes else None
    config = OptimizeConfig(
        model=args.model, data=_data_config(args), output=Path(args.output) if args.output else None, recipes=recipes,
        bench=BenchConfig(threads=args.threads, batch_size=args.batch_size), eval_limit=args.eval_limit,
        seed=args.seed, overwrite=args.overwrite, requirements=requirements,
        export=Path(args.export) if args.export else None, eval_data=_eval_data_config(args), resume=args.resume,
    )
    run, folder = optimize(config, Console(stderr=True))
    out = Console(record=True)
    print_table(run, out)
    out.print(f"report: {folder / 'report.md'}")
    if run.recommendation and " ".join(run.recommendation.split()) not in " ".join(out.export_text().split()):
        out.print(run.recommendation)
    if run.chosen is not None and config.export is not None:
        serve = config.export / "serve.toml"
        Console().print(f"exported {run.chosen} to {config.export}: serve it with infopt serve --config {serve}")
    asked = recipes is None or args.requirements or any(v is not None for v in flags.values())
    if run.chosen is None and asked and (recipes is None or len(run.variants) > 1):
        raise NoVariantMeets(run.recommendation + (" Nothing was exported." if config.export else ""),
                             f"relax the bound it misses or give a bigger --time-budget; the report is {folder}.")


def cmd_bench(args: argparse.Namespace) -> None:
    _run_and_report(args, ())


def _print_saved(summary: dict[str, object]) -> None:
    s = summary
    print(f"saved {s['name']} ({s['method']}, format {s['format']}) to {s['output']}, fingerprint {s['fingerprint']}: "
          f"{s['weights_mb']} MB of weights on disk (input: {s['input_weights_mb']} MB); "
          f"measure it with: infopt bench --model {s['output']}")


def cmd_quantize(args: argparse.Namespace) -> None:
    from infopt.compress.quantize import config_from_name
    from infopt.optimize import QuantizeJob, run_stage_job

    config = config_from_name(args.scheme, **({"group_size": args.group_size} if args.group_size else {}))
    job = QuantizeJob(args.model, config, Path(args.output), _data_config(args), args.seed, args.overwrite)
    _print_saved(run_stage_job(job))


def _layers(text: str) -> int | tuple[int, ...]:
    """`2` -> 2 (a count); `4,5` or `5,` -> layer indices."""
    try:
        return int(text) if "," not in text else tuple(int(i) for i in text.split(",") if i.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a count (2) nor layer indices (4,5).") from None


def cmd_prune(args: argparse.Namespace) -> None:
    from infopt.compress.prune import RecoveryConfig, config_from_name
    from infopt.optimize import PruneJob, run_stage_job

    given = {"sparsity": args.sparsity, "scope": args.scope, "pattern": args.pattern, "steps": args.steps,
             "heads": args.heads, "ffn": args.ffn, "layers": args.layers, "importance": args.importance}
    options: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    if args.recover_epochs is not None:
        options["recovery"] = RecoveryConfig(args.recover_epochs, args.recover_lr, distill=not args.no_distill)
    from infopt.train import distributed

    with distributed.rank_output(Path(args.output), "model", args.overwrite) as (output, overwrite):
        job = PruneJob(args.model, config_from_name(args.method, **options), output, _data_config(args),
                       args.seed, overwrite)
        summary = run_stage_job(job)
    if distributed.is_main():  # under torchrun only rank 0 writes --output and prints
        _print_saved(summary)


def cmd_distill(args: argparse.Namespace) -> None:
    import json

    from infopt.compress.distill import DistillConfig
    from infopt.optimize import DistillJob, run_distill_job
    from infopt.train import FinetuneConfig, distributed

    weights = _weights(args.teacher_weights)
    train = FinetuneConfig(epochs=args.epochs, batch_size=args.train_batch_size, lr=args.lr,
                           max_length=args.max_length, seed=args.seed)
    config = DistillConfig(
        temperature=args.temperature, alpha=args.alpha, feature=args.feature, relation=args.relation,
        attention=args.attention, scheme=args.scheme, teacher_weights=weights, train=train, max_steps=args.steps,
        cache=not args.no_cache,
    )
    with distributed.rank_output(Path(args.output), "model", args.overwrite) as (output, overwrite):
        job = DistillJob(teacher=args.teacher, student=args.student, output=output, data=_data_config(args),
                         config=config, extra_teachers=_names(args.teachers), assistant=args.assistant,
                         overwrite=overwrite)
        summary = run_distill_job(job)
    if distributed.is_main():  # under torchrun only rank 0 writes --output and prints
        print(json.dumps(summary, indent=2))


def cmd_report(args: argparse.Namespace) -> None:
    from rich.console import Console

    from infopt.evaluate import print_table, rerender_report

    folder = Path(args.dir)
    run = rerender_report(folder)
    print_table(run, Console())
    Console().print(f"report: {folder / 'report.md'} and {folder / 'report.html'}")


def _add_common(p: argparse.ArgumentParser, output_required: bool = False) -> None:
    p.add_argument("--model", default="minilm-l6-rt", help="bundled model name or model folder (default: minilm-l6-rt)")
    p.add_argument("--data", help="bundled dataset (rotten-tomatoes, tweets, news) or a .csv / .jsonl file")
    p.add_argument("--text-column", help="column holding the text (user files)")
    p.add_argument("--label-column", help="column holding the label (user files)")
    p.add_argument("--limit", type=int, help="use at most this many examples of the data")
    p.add_argument("--eval-limit", type=int, help="score quality on at most this many test examples")
    p.add_argument("--output", required=output_required, help="output folder (new, empty, or an earlier infopt "
                   "output of the same kind with --overwrite; infopt never deletes files it did not write)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier infopt output in --output")
    p.add_argument("--threads", type=int, help="intra-op threads for timing (default: torch's default)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size of the throughput measurement")
    p.add_argument("--seed", type=int, default=0, help="seed of splits and sampling")
    add_load_flags(p)


def _add_requirements(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("requirements (also from --requirements FILE.toml, whose keys are the field names of "
                             "infopt.optimize.Requirements; these flags override it)")
    g.add_argument("--priority", choices=("latency", "throughput", "size", "accuracy", "cost"),
                   help="what the chosen variant is best at among those meeting every bound (default latency)")
    g.add_argument("--max-accuracy-drop", metavar="X", help="points (1 = one accuracy point, the default) or "
                   "relative (1%%)")
    g.add_argument("--max-p95-ms", type=float, metavar="MS", help="largest p95 latency (at --p95-batch-size)")
    g.add_argument("--p95-batch-size", type=int, metavar="N", help="batch size of the p95 bound (default 1)")
    g.add_argument("--min-throughput", type=float, metavar="R", help="fewest items/s at --batch-size")
    g.add_argument("--max-size-mb", type=float, metavar="MB", help="largest size of the weights on disk")
    g.add_argument("--max-memory-mb", type=float, metavar="MB", help="largest peak resident memory")
    g.add_argument("--time-budget", metavar="T", help="time the search may take, e.g. 20m (default), 900s, 1h")
    g.add_argument("--price-per-hour", type=float, metavar="X", help="this machine's price per hour: cost per "
                   "1,000 requests in the report")
    g.add_argument("--requirements", metavar="FILE.toml", help="the requirements as a TOML file")
    p.add_argument("--export", metavar="DIR", help="copy the chosen variant and a matching serve.toml into DIR "
                   "(new, or an earlier infopt export with --overwrite)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="infopt", description="Make models faster, smaller and cheaper; measured.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the bundled models").set_defaults(func=cmd_models)
    p = sub.add_parser("optimize", help="measure the model and its optimized variants side by side")
    _add_common(p)
    p.add_argument("--recipes", help="comma-separated recipes: quantization schemes (onnx-int8, ...), prune-*, "
                   "distill-lN, and chains A+B (e.g. prune-structured+onnx-int8); default: the task's list")
    p.add_argument("--schemes", dest="recipes", help=argparse.SUPPRESS)  # the flag's name before recipes
    p.add_argument("--eval-data", metavar="FILE", help="a separate labelled .csv / .jsonl scored whole as the test "
                   "set (--data then gives only the train split and calibration texts)")
    p.add_argument("--eval-text-column", metavar="NAME", help="text column of --eval-data (default: --text-column)")
    p.add_argument("--eval-label-column", metavar="NAME", help="label column of --eval-data (default: "
                   "--label-column)")
    p.add_argument("--resume", action="store_true", help="continue the run interrupted in --output (Ctrl-C, "
                   "SIGTERM): reuse its finished variants, redo the unfinished one")
    _add_requirements(p)
    p.set_defaults(func=cmd_optimize)
    p = sub.add_parser("bench", help="measure one model: quality, latency, throughput, size, memory")
    _add_common(p)
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("quantize", help="quantize a model and save the variant")
    _add_common(p, output_required=True)
    p.add_argument("--scheme", required=True, help="quantization scheme, e.g. dynamic-int8, onnx-int8, weight-int4")
    p.add_argument("--group-size", type=int, help="group size of weight-int4")
    p.set_defaults(func=cmd_quantize)
    p = sub.add_parser("prune", help="prune a model (unstructured, 2:4 or structured) and save the variant")
    _add_common(p, output_required=True)
    p.add_argument("--method", required=True, choices=("magnitude", "wanda", "structured"), help="pruning method")
    p.add_argument("--sparsity", type=float, help="magnitude / wanda: fraction of weights zeroed, in [0, 1)")
    p.add_argument("--scope", choices=("layer", "row", "global"), help="magnitude / wanda: where weights compete")
    p.add_argument("--pattern", help="magnitude / wanda: N:M semi-structured sparsity, e.g. 2:4")
    p.add_argument("--steps", type=int, help="magnitude / wanda: gradual schedule steps (needs --recover-epochs)")
    p.add_argument("--heads", type=float, help="structured: fraction of attention heads removed per layer")
    p.add_argument("--ffn", type=float, help="structured: fraction of FFN neurons removed per layer")
    p.add_argument("--layers", type=_layers,
                   help="structured: how many layers to remove (e.g. 2), or which (4,5; one index: 5,)")
    p.add_argument("--importance", choices=("magnitude", "taylor"), help="structured: how heads / neurons are ranked")
    p.add_argument("--recover-epochs", type=float, help="fine-tune after pruning for this many epochs (e.g. 0.33)")
    p.add_argument("--recover-lr", type=float, default=1e-4, help="peak learning rate of the recovery fine-tune")
    p.add_argument("--no-distill", action="store_true", help="recover on labels only, not from the unpruned model")
    p.set_defaults(func=cmd_prune)
    p = sub.add_parser("distill", help="distil a teacher into a smaller student and save it")
    p.add_argument("--teacher", default="minilm-l6-rt", help="bundled model name or folder (default: minilm-l6-rt)")
    p.add_argument("--student", default="every-other", help="every-other (default), N layers, layers=0,2,5, "
                   "random[:N], or a model name / folder to start from (e.g. minilm-l3)")
    p.add_argument("--data", help="labelled data (default: the teacher's own) or, for causal LMs, a corpus (news)")
    p.add_argument("--text-column", help="column holding the text (user files)")
    p.add_argument("--label-column", help="column holding the label (user files)")
    p.add_argument("--limit", type=int, help="use at most this many examples of the data")
    p.add_argument("--output", required=True, help="folder the student is saved to (new, or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier infopt model in --output")
    p.add_argument("--temperature", type=float, default=4.0, help="softmax temperature T > 0 (default 4)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the soft targets in [0, 1] (default 0.5)")
    p.add_argument("--feature", type=float, default=0.0, help="weight of feature-based KD (default 0)")
    p.add_argument("--relation", type=float, default=0.0, help="weight of relation-based KD (default 0)")
    p.add_argument("--attention", type=float, default=0.0, help="weight of attention transfer (default 0)")
    p.add_argument("--scheme", default="offline", choices=("offline", "online", "self"),
                   help="offline: cached teacher; online: mutual learning; self: early-exit model of the teacher")
    p.add_argument("--teachers", help="more teachers for multi-teacher distillation, comma-separated")
    p.add_argument("--teacher-weights", help="weights of all teachers, comma-separated (default: equal)")
    p.add_argument("--assistant", help="progressive: student spec of an assistant distilled first")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the training data (default 1)")
    p.add_argument("--steps", type=int, help="optimizer steps instead of --epochs (causal LMs: e.g. 150)")
    p.add_argument("--train-batch-size", type=int, default=32, help="training batch size (default 32)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    p.add_argument("--max-length", type=int, default=64, help="tokens per text / per causal-LM block (default 64)")
    p.add_argument("--no-cache", action="store_true", help="do not keep teacher outputs on disk")
    p.add_argument("--seed", type=int, default=0, help="seed of splits, batches and initialisation")
    add_load_flags(p)
    p.set_defaults(func=cmd_distill)
    add_serving_commands(sub)
    p = sub.add_parser("report", help="re-render report.md and report.html from a run's results.json",
                       description="Re-render report.md and report.html in DIR from DIR/results.json (written by "
                       "`infopt optimize`), and print the table.")
    p.add_argument("dir", metavar="DIR", help="the report folder of an `infopt optimize` run")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line and return 2."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a malformed command line (already printed on one line)
        return e.code if isinstance(e.code, int) else 2
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    opted = [env for flag, env in (("allow_pickle", "INFOPT_ALLOW_PICKLE"),
                                   ("trust_remote_code", "INFOPT_TRUST_REMOTE_CODE"))
             if getattr(args, flag, False) and env not in os.environ]
    for env in opted:  # an environment variable: the processes a command starts inherit it (until it returns)
        os.environ[env] = "1"
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    func: Callable[[argparse.Namespace], None] = args.func
    previous = on_sigterm() if args.command in WRITERS else None
    try:
        run_ranked(func, args)
        sys.stdout.flush()
    except InfoptError as e:
        if not getattr(e, "printed", False):  # under torchrun rank 0 printed the error every rank raised
            print(f"infopt: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:  # SIGINT, or SIGTERM (_Terminated): whatever was half-written is gone
        print(f"infopt: {getattr(e, 'message', '') or 'interrupted'}", file=sys.stderr)
        return 128 + (getattr(e, "signum", None) or signal.SIGINT)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EPIPE):
            raise
        drop_stdout()
        where = "the output (stdout)" if e.errno == errno.EPIPE else "the disk written to"
        print(f"infopt: error: {where} failed: {e.strerror}. Fix: free some space or write elsewhere.",
              file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        for env in opted:
            os.environ.pop(env, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
