"""Distil the default teacher (MiniLM-L6, 6 layers) into 3-layer students and measure them against each other.

    .venv/bin/python benchmarks/distill_teacher.py --part headline        # 3-layer student vs teacher, speed-up
    .venv/bin/python benchmarks/distill_teacher.py --part ablation [--rows hard,response,...]
    .venv/bin/python benchmarks/distill_teacher.py --part architectures   # progressive and multi-teacher
    .venv/bin/python benchmarks/distill_teacher.py --report               # the tables, from the saved results

Every part appends its rows to --results (JSON), so the parts can run one after the other on a busy machine
(each under ~10 minutes); every row uses the same seed and the same budget, so splitting the run changes
nothing but wall time. Budgets:
- headline: the whole Rotten Tomatoes train split (10,248 reviews), 1 epoch, batch 32, max_length 64;
- ablation / architectures: the same seeded 4,096-review subset of it for every row, 1 epoch (128 steps).
Quality is test accuracy on the 1,280-review test split (seed 0), calibration is test ECE before and after
temperature scaling fitted on validation. Speed is batch-1 latency (tokenization included) of teacher and
student measured interleaved in the same process, --threads threads (default 1), over 200 test reviews.
The teacher's outputs are computed once into the disk cache; every offline row reads them from there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from sklearn.metrics import f1_score

from infopt.compress.distill import (
    DistillConfig,
    StudentConfig,
    distill,
    distill_chain,
    make_student,
    teacher_outputs,
)
from infopt.data import DataConfig, TextDataset, load_dataset, split_dataset
from infopt.evaluate import expected_calibration_error, fit_temperature, latencies_ms, predict_logits
from infopt.models import LoadedModel, load_model, save_model
from infopt.train import FinetuneConfig

TEACHER = "minilm-l6-rt"
SUBSET = 4096
HEADLINE = FinetuneConfig(epochs=1.0, batch_size=32, lr=1e-4, max_length=64, seed=0)
ABLATION = HEADLINE  # same schedule, on the fixed subset
KD = DistillConfig(temperature=4.0, alpha=0.5, train=ABLATION)

ABLATION_ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    # name: (student init, DistillConfig overrides)
    "hard labels only": ("teacher-layers", {"alpha": 0.0}),
    "response KD (offline)": ("teacher-layers", {}),
    "response + feature": ("teacher-layers", {"feature": 1.0}),
    "response + relation": ("teacher-layers", {"relation": 1.0}),
    "response + attention": ("teacher-layers", {"attention": 1.0}),
    "response + feature + relation + attention": (
        "teacher-layers", {"feature": 1.0, "relation": 1.0, "attention": 1.0}
    ),
    "response KD (online, mutual)": ("teacher-layers", {"scheme": "online"}),
    "init minilm-l3, hard labels": ("pretrained", {"alpha": 0.0}),
    "init minilm-l3, response KD": ("pretrained", {}),
    "init random, hard labels": ("random", {"alpha": 0.0}),
    "init random, response KD": ("random", {}),
}
SHORT = {
    "hard": "hard labels only", "response": "response KD (offline)", "feature": "response + feature",
    "relation": "response + relation", "attention": "response + attention",
    "all": "response + feature + relation + attention", "online": "response KD (online, mutual)",
    "l3-hard": "init minilm-l3, hard labels", "l3": "init minilm-l3, response KD",
    "random-hard": "init random, hard labels", "random": "init random, response KD",
}


class TeacherCalls:
    """Counts forward calls of a module and of copies made of it meanwhile (the online scheme trains a copy)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.count = 0
        self.module = module

    def __enter__(self) -> TeacherCalls:
        calls = self

        def hook(*_: Any) -> None:  # a plain closure: deepcopy shares it, so a copy's calls count here too
            calls.count += 1

        self.handle = self.module.register_forward_pre_hook(hook)
        return self

    def __exit__(self, *_: Any) -> None:
        self.handle.remove()


def _load_results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"rows": {}}


def _save_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)


def _quality(model: LoadedModel, splits: Any) -> dict[str, float]:
    """Test accuracy / macro-F1, and test ECE / NLL before and after temperature scaling fitted on validation."""
    test_logits = predict_logits(model, splits.test.texts, max_length=64)
    val_logits = predict_logits(model, splits.validation.texts, max_length=64)
    y_test, y_val = torch.tensor(splits.test.labels), torch.tensor(splits.validation.labels)
    pred = test_logits.argmax(-1)
    t = fit_temperature(val_logits, y_val)
    return {
        "accuracy": 100 * (pred == y_test).float().mean().item(),
        "macro_f1": 100 * float(f1_score(y_test.numpy(), pred.numpy(), average="macro")),
        "ece": expected_calibration_error(test_logits, y_test),
        "nll": torch.nn.functional.cross_entropy(test_logits, y_test).item(),
        "temperature": t,
        "ece_scaled": expected_calibration_error(test_logits / t, y_test),
        "nll_scaled": torch.nn.functional.cross_entropy(test_logits / t, y_test).item(),
    }


def _subset(train: TextDataset) -> TextDataset:
    keep = sorted(random.Random(0).sample(range(len(train)), SUBSET))
    return train.subset(keep)


def _student(teacher: LoadedModel, init: str) -> LoadedModel:
    return make_student(teacher, StudentConfig(init=init, num_layers=3))  # type: ignore[arg-type]


def _row(
    name: str, teacher: LoadedModel | list[LoadedModel], student: Any, data: TextDataset, config: DistillConfig,
    splits: Any, watch: LoadedModel,
) -> tuple[dict[str, Any], LoadedModel]:
    print(f"--- {name}", flush=True)
    t0 = time.perf_counter()
    with TeacherCalls(watch.model) as calls:
        out = distill(teacher, student, data, config)
    seconds = time.perf_counter() - t0
    row = {
        "train_s": seconds,
        "teacher_forward_calls": calls.count,
        "examples": len(data),
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("early_exit",)},
        **_quality(out, splits),
    }
    print(f"    test acc {row['accuracy']:.2f}, ECE {row['ece']:.2f} -> {row['ece_scaled']:.2f}, "
          f"{seconds:.0f} s, teacher forward calls during training: {calls.count}", flush=True)
    return row, out


def _latency(models: dict[str, LoadedModel], texts: list[str], rounds: int, per_round: int) -> dict[str, Any]:
    """Batch-1 latencies, models interleaved round by round so machine load hits all alike."""
    samples: dict[str, list[float]] = {n: [] for n in models}
    for m in models.values():
        latencies_ms(m, texts, warmup=10, iters=10, budget_s=0)
    for _ in range(rounds):
        for n, m in models.items():
            samples[n] += latencies_ms(m, texts, warmup=2, iters=per_round, budget_s=600)
    return {
        n: {"p50_ms": statistics.median(v), "mean_ms": statistics.fmean(v), "n": len(v)} for n, v in samples.items()
    }


def part_headline(teacher: LoadedModel, splits: Any, results: dict[str, Any], args: argparse.Namespace) -> None:
    rows = results["rows"]
    config = dataclasses.replace(KD, train=HEADLINE)
    t0 = time.perf_counter()
    cache = teacher_outputs(teacher, splits.train.texts, 64)
    print(f"teacher logits on the train split: {'computed' if cache.ran_teacher else 'read from the cache'} "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)
    row, student = _row("headline: 3 layers (teacher layers 0,2,5), response KD, full train split", teacher,
                        _student(teacher, "teacher-layers"), splits.train, config, splits, teacher)
    if args.save:
        save_model(student, Path(args.save))
        row["saved"] = args.save
    texts = splits.test.texts[:200]
    lat = _latency({"teacher": teacher, "student": student}, texts, args.rounds, args.per_round)
    row["latency"] = lat
    row["threads"] = torch.get_num_threads()
    row["params"] = {"teacher": teacher.num_parameters(), "student": student.num_parameters()}
    rows["headline"] = row


def part_ablation(teacher: LoadedModel, splits: Any, results: dict[str, Any], args: argparse.Namespace) -> None:
    data = _subset(splits.train)
    t0 = time.perf_counter()
    cache = teacher_outputs(teacher, data.texts, 64, pooled_layers=(1, 3, 6), attention_layers=(1, 3, 6))
    print(f"teacher outputs (logits, pooled and attention maps of layers 1, 3, 6) on the {len(data)}-review subset: "
          f"{'computed' if cache.ran_teacher else 'read from the cache'} in {time.perf_counter() - t0:.1f} s",
          flush=True)
    names = [SHORT.get(r, r) for r in args.rows.split(",")] if args.rows else list(ABLATION_ROWS)
    for name in names:
        init, overrides = ABLATION_ROWS[name]
        config = dataclasses.replace(KD, **overrides)
        row, _ = _row(name, teacher, _student(teacher, init), data, config, splits, teacher)
        results["rows"][name] = row
        _save_results(args.results, results)


def part_architectures(teacher: LoadedModel, splits: Any, results: dict[str, Any], args: argparse.Namespace) -> None:
    data = _subset(splits.train)
    print("--- progressive: teacher (6) -> assistant (4 layers: 0,2,3,5) -> student (3 layers: teacher's 0,2,5)")
    t0 = time.perf_counter()
    chain = [make_student(teacher, StudentConfig(num_layers=4)), _student(teacher, "teacher-layers")]
    with TeacherCalls(teacher.model) as calls:
        assistant, student = distill_chain([teacher], chain, data, KD)
    seconds = time.perf_counter() - t0
    results["rows"]["assistant (4 layers), response KD"] = {
        "train_s": None, "teacher_forward_calls": None, "examples": len(data), **_quality(assistant, splits)
    }
    results["rows"]["progressive (teacher -> assistant -> student)"] = {
        "train_s": seconds, "teacher_forward_calls": calls.count, "examples": len(data), "note": "both stages",
        **_quality(student, splits),
    }
    _save_results(args.results, results)
    row, _ = _row("multi-teacher (teacher + assistant, weights 0.5 / 0.5)", [teacher, assistant],
                  _student(teacher, "teacher-layers"), data, dataclasses.replace(KD, teacher_weights=(0.5, 0.5)),
                  splits, teacher)
    results["rows"]["multi-teacher (teacher + assistant, 0.5 / 0.5)"] = row


def report(results: dict[str, Any]) -> None:
    rows = results["rows"]
    teacher = rows.get("teacher")
    if teacher:
        print(f"\nteacher {TEACHER}: test accuracy {teacher['accuracy']:.2f}, ECE {teacher['ece']:.2f} "
              f"-> {teacher['ece_scaled']:.2f} after temperature scaling (T = {teacher['temperature']:.2f})")
    head = rows.get("headline")
    if head and teacher:
        lat = head["latency"]
        keep = head["accuracy"] / teacher["accuracy"]
        p50 = lat["teacher"]["p50_ms"] / lat["student"]["p50_ms"]
        mean = lat["teacher"]["mean_ms"] / lat["student"]["mean_ms"]
        print("\nheadline: 3-layer student (teacher layers 0,2,5), response KD T=4 alpha=0.5, "
              f"{head['config']['train']['epochs']:g} epoch(s) on {head['examples']} reviews")
        print(f"  test accuracy {head['accuracy']:.2f} vs teacher {teacher['accuracy']:.2f}: "
              f"keeps {100 * keep:.1f}% (target >= 97%: {'met' if keep >= 0.97 else 'MISSED'})")
        print(f"  batch-1 p50 {lat['student']['p50_ms']:.2f} ms vs {lat['teacher']['p50_ms']:.2f} ms: "
              f"{p50:.2f}x faster "
              f"(mean {mean:.2f}x; {head['threads']} thread(s), {lat['student']['n']} calls each, interleaved; "
              f"target >= 1.8x: {'met' if p50 >= 1.8 else 'MISSED'})")
        print(f"  params {head['params']['student'] / 1e6:.1f}M vs {head['params']['teacher'] / 1e6:.1f}M; "
              f"ECE {head['ece']:.2f} -> {head['ece_scaled']:.2f} (T = {head['temperature']:.2f}); "
              f"trained in {head['train_s'] / 60:.1f} min")
    groups = {
        "kinds and schemes (same init: teacher layers 0,2,5)": [
            n for n in ABLATION_ROWS if not n.startswith("init ")
        ],
        "student initialisation (3 layers each)": [
            "hard labels only", "response KD (offline)", *(n for n in ABLATION_ROWS if n.startswith("init "))
        ],
        "architectures against single-teacher": [
            "response KD (offline)", "assistant (4 layers), response KD",
            "progressive (teacher -> assistant -> student)", "multi-teacher (teacher + assistant, 0.5 / 0.5)",
        ],
    }
    base = rows.get("hard labels only")
    header = (f"{'row':<48} {'acc':>6} {'vs hard':>7} {'F1':>6} {'ECE':>5} {'ECE(T)':>6} {'T':>5} {'train s':>7} "
              f"{'teacher fwd':>11}")
    for title, names in groups.items():
        present = [n for n in names if n in rows]
        if not present:
            continue
        print(f"\n{title}: {SUBSET}-review subset, 1 epoch, seed 0, test split")
        print(header)
        for name in present:
            r = rows[name]
            delta = f"{r['accuracy'] - base['accuracy']:+.2f}" if base else ""
            ts = f"{r['train_s']:.0f}" if r.get("train_s") is not None else "-"
            calls = r.get("teacher_forward_calls")
            print(f"{name:<48} {r['accuracy']:>6.2f} {delta:>7} {r['macro_f1']:>6.2f} {r['ece']:>5.2f} "
                  f"{r['ece_scaled']:>6.2f} {r['temperature']:>5.2f} {ts:>7} {calls if calls is not None else '-':>11}")
    print("\n(train s is wall time on a shared 2-core machine; teacher fwd counts forward calls of the 6-layer "
          "teacher during training, its co-trained copy included: 0 = every target came from the disk cache)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("headline", "ablation", "architectures"))
    parser.add_argument("--rows", help=f"ablation rows, comma-separated: {', '.join(SHORT)}")
    parser.add_argument("--results", type=Path, default=Path("infopt-runs/distill_teacher.json"))
    parser.add_argument("--save", help="headline: also save the student to this folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="headline: interleaved latency rounds")
    parser.add_argument("--per-round", type=int, default=100, help="headline: batch-1 calls per model per round")
    parser.add_argument("--report", action="store_true", help="print the tables from --results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = _load_results(args.results)
    if args.part:
        teacher = load_model(TEACHER)
        splits = split_dataset(load_dataset(DataConfig("rotten-tomatoes")), seed=0)
        if "teacher" not in results["rows"]:
            results["rows"]["teacher"] = _quality(teacher, splits)
        {"headline": part_headline, "ablation": part_ablation, "architectures": part_architectures}[args.part](
            teacher, splits, results, args
        )
        _save_results(args.results, results)
    report(results)


if __name__ == "__main__":
    main()
