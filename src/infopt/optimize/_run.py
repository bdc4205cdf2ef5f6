"""The main job: measure the baseline and every variant that applies, side by side, and write the report."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from infopt._atomic import atomic_dir
from infopt.data import DataConfig, TextDataset, load_dataset, load_text_corpus, split_dataset
from infopt.errors import MissingDependency, NotApplicable, UserError
from infopt.evaluate import EvalSpec, RunResult, VariantResult, embed, environment, measure_variant, write_report
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize._config import OptimizeConfig
from infopt.optimize._variants import Candidate, candidates

__all__ = ["EvalPlan", "default_output", "optimize", "plan_evaluation"]

LM_PROMPT = "Write a short review of a movie you liked, and explain why."


def default_output() -> Path:
    return Path("infopt-runs") / time.strftime("%Y%m%d-%H%M%S")


@dataclass
class EvalPlan:
    """The test data of a run, its calibration texts, the name of its data and (classifiers) its train split."""

    spec: EvalSpec
    calibration: list[str]
    data_name: str
    metric: str
    train: TextDataset | None = None


def _default_data(model: LoadedModel) -> DataConfig:
    if source := model.manifest.trained_on():
        return DataConfig(source)
    raise UserError(
        f"Model {model.manifest.name} is a classifier and no labelled data was given.",
        "pass --data FILE --text-column NAME --label-column NAME.",
    )


def _align_labels(test: TextDataset, model: LoadedModel) -> TextDataset:
    names, model_labels = test.label_names, model.manifest.labels
    if model_labels and set(names) == set(model_labels):
        remap = [model_labels.index(n) for n in names]
        return TextDataset(test.name, test.texts, [remap[y] for y in test.labels], model_labels)
    if model_labels and len(model_labels) != len(names):
        raise UserError(
            f"The model has {len(model_labels)} labels {model_labels} but the data has {len(names)}: {names}.",
            "give data with the model's labels, or a model trained on this data.",
        )
    return test


def _limit(items: list, n: int | None) -> list:
    return items if n is None else items[:n]


def plan_evaluation(model: LoadedModel, config: OptimizeConfig) -> EvalPlan:
    """Load and split the data for the model's task; fails fast on bad data."""
    rng = random.Random(config.seed)
    if model.task == "classification":
        splits = split_dataset(load_dataset(config.data or _default_data(model)), seed=config.seed)
        test = _align_labels(splits.test, model)
        texts = _limit(test.texts, config.eval_limit)
        spec = EvalSpec("classification", texts, _limit(test.labels, config.eval_limit), speed_texts=texts[:200])
        return EvalPlan(spec, splits.train.texts[:128], test.name, "accuracy", _align_labels(splits.train, model))
    if model.task == "embedding":
        data = config.data or DataConfig("rotten-tomatoes")
        texts = (
            load_dataset(data).texts if data.label_column or data.source in ("rotten-tomatoes", "tweets")
            else load_text_corpus(data.source, data.text_column or "text")
        )
        rng.shuffle(texts := list(texts))
        sample = texts[: config.eval_limit or 512]
        spec = EvalSpec("embedding", sample, reference=embed(model, sample), speed_texts=sample[:200])
        return EvalPlan(spec, texts[-128:], data.source, "cosine_to_parent")
    source = config.data.source if config.data else "news"
    corpus = load_text_corpus(source, (config.data.text_column if config.data else None) or "text")
    rng.shuffle(corpus := list(corpus))
    held_out, calibration = corpus[: max(1, len(corpus) // 10)], corpus[len(corpus) // 10 :][:64]
    speed = [" ".join(t.split()[:20]) for t in held_out[:64]]
    max_tokens = 256 * (config.eval_limit or 32)
    spec = EvalSpec("causal-lm", held_out, speed_texts=speed, prompt=LM_PROMPT, max_tokens=max_tokens)
    return EvalPlan(spec, calibration, source, "perplexity")


def _build_and_measure(
    cand: Candidate, base: LoadedModel, plan: EvalPlan, config: OptimizeConfig, folder: Path, console: Console
) -> VariantResult | None:
    target = folder / "variants" / cand.name
    try:
        with console.status(f"building {cand.name} ({cand.about})"):
            variant = cand.build(base, plan.calibration, **({"train": plan.train} if cand.train else {}))
            save_model(variant, target)
        with console.status(f"measuring {cand.name}"):
            result = measure_variant(target, plan.spec, config.bench)
    except (NotApplicable, MissingDependency) as e:
        console.print(f"[yellow]skipped {cand.name}: {e}[/yellow]")
        return None
    result.path = str(target.relative_to(folder))
    result.notes += list(variant.manifest.metrics.get("prune", {}).get("notes", []))
    console.print(f"measured {cand.name}: {plan.metric} {result.quality.get(plan.metric, float('nan')):.4g}, "
                  f"p50 {result.speed.p50_ms:.2f} ms, {result.size_mb:.1f} MB")
    return result


def optimize(config: OptimizeConfig, console: Console | None = None) -> tuple[RunResult, Path]:
    """Measure the baseline and each candidate variant; returns the results and the report folder."""
    console = console or Console(stderr=True)
    output = config.output or default_output()
    with console.status(f"loading {config.model}"):
        base = load_model(config.model)
    plan = plan_evaluation(base, config)
    todo = candidates(base.task, config.schemes)
    with atomic_dir(output) as folder:
        with console.status(f"measuring the baseline {base.manifest.name}"):
            base_path = folder / "variants" / "baseline"
            save_model(base, base_path)
            baseline = measure_variant(base_path, plan.spec, config.bench)
        baseline.name, baseline.path = f"{base.manifest.name} (baseline)", "variants/baseline"
        console.print(f"baseline: {plan.metric} {baseline.quality.get(plan.metric, float('nan')):.4g}, "
                      f"p50 {baseline.speed.p50_ms:.2f} ms, {baseline.size_mb:.1f} MB")
        results = [baseline]
        for cand in todo:
            r = _build_and_measure(cand, base, plan, config, folder, console)
            if r is not None:
                results.append(r)
        env = environment(config.seed) | {"measured_threads": baseline.speed.threads}
        run = RunResult(str(config.model), base.task, plan.data_name, results, env, plan.metric)
        write_report(run, folder)
    return run, output
