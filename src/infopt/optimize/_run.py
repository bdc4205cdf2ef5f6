"""The main job: measure the baseline and every recipe's variant, side by side, and write the report."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from infopt._atomic import atomic_dir, check_output
from infopt.errors import MissingDependency, NotApplicable
from infopt.evaluate import RunResult, VariantResult, environment, measure_variant, write_report
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize._config import OptimizeConfig
from infopt.optimize._plan import EvalPlan, plan_evaluation
from infopt.optimize._recipes import BuildCache, Recipe, build, parse_recipes

__all__ = ["default_output", "optimize"]


def default_output() -> Path:
    return Path("infopt-runs") / time.strftime("%Y%m%d-%H%M%S")


def _build_and_measure(
    recipe: Recipe, base: LoadedModel, plan: EvalPlan, config: OptimizeConfig, folder: Path, cache: BuildCache,
    console: Console,
) -> VariantResult | None:
    target = folder / "variants" / recipe.name
    try:
        with console.status(f"building {recipe.name} ({recipe.about})"):
            variant = build(recipe, base, plan.inputs, cache)
            save_model(variant, target)
        with console.status(f"measuring {recipe.name}"):
            result = measure_variant(target, plan.spec, config.bench)
    except (NotApplicable, MissingDependency) as e:
        console.print(f"[yellow]skipped {recipe.name}: {e}[/yellow]")
        return None
    result.path = str(target.relative_to(folder))
    result.notes += list(variant.manifest.metrics.get("prune", {}).get("notes", []))
    console.print(f"measured {recipe.name}: {plan.metric} {result.quality.get(plan.metric, float('nan')):.4g}, "
                  f"p50 {result.speed.p50_ms:.2f} ms, {result.size_mb:.1f} MB")
    return result


def optimize(config: OptimizeConfig, console: Console | None = None) -> tuple[RunResult, Path]:
    """Measure the baseline and each recipe's variant; returns the results and the report folder."""
    console = console or Console(stderr=True)
    output = check_output(config.output or default_output(), "report", config.overwrite)
    with console.status(f"loading {config.model}"):
        base = load_model(config.model)
    recipes = parse_recipes(config.recipes, base.task)
    plan = plan_evaluation(base, config.data, config.eval_limit, config.seed)
    cache = BuildCache()
    with atomic_dir(output, "report", config.overwrite) as folder:
        with console.status(f"measuring the baseline {base.manifest.name}"):
            base_path = folder / "variants" / "baseline"
            save_model(base, base_path)
            baseline = measure_variant(base_path, plan.spec, config.bench)
        baseline.name, baseline.path = f"{base.manifest.name} (baseline)", "variants/baseline"
        console.print(f"baseline: {plan.metric} {baseline.quality.get(plan.metric, float('nan')):.4g}, "
                      f"p50 {baseline.speed.p50_ms:.2f} ms, {baseline.size_mb:.1f} MB")
        results = [baseline]
        for recipe in recipes:
            r = _build_and_measure(recipe, base, plan, config, folder, cache, console)
            if r is not None:
                results.append(r)
        env = environment(config.seed) | {"measured_threads": baseline.speed.threads}
        run = RunResult(str(config.model), base.task, plan.data_name, results, env, plan.metric)
        write_report(run, folder)
    return run, output
