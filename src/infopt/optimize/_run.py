"""The main job: measure the baseline, search this machine's candidates (or measure the named recipes), choose by
the priority among the variants that meet every requirement, and write the report (and the export)."""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console

from infopt._atomic import atomic_dir, check_output, output_kind
from infopt.data import TextDataset
from infopt.errors import NotApplicable, UserError
from infopt.evaluate import (
    RunResult,
    VariantResult,
    at_threads,
    environment,
    interleaved_p50_ms,
    measure_variant,
    write_report,
)
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize._build_store import BuildStore, ResultStore
from infopt.optimize._candidates import Candidate, plan_candidates, prefix_key, step_costs
from infopt.optimize._cascade import cascade_variant, early_exit_variant, validation_split
from infopt.optimize._config import OptimizeConfig
from infopt.optimize._export import export_variant
from infopt.optimize._machine import Machine
from infopt.optimize._plan import EvalPlan, plan_evaluation
from infopt.optimize._recipes import BuildCache, Recipe, build, parse_recipes
from infopt.optimize._resume import INTERRUPTED, JOURNAL, Interrupted, Journal, run_context
from infopt.optimize._search import SearchOutcome, search

__all__ = ["RunBench", "default_output", "optimize"]


def default_output() -> Path:
    return Path("infopt-runs") / time.strftime("%Y%m%d-%H%M%S")


class RunBench:
    """The real Bench of the search: variants built by recipe into `folder/variants/NAME`, each measured in a fresh
    process (`measure_variant`), the final rounds interleaved in this process."""

    def __init__(self, base: LoadedModel, plan: EvalPlan, config: OptimizeConfig, folder: Path, cache: BuildCache,
                 results: ResultStore | None, console: Console, journal: Journal | None = None) -> None:
        self.base, self.plan, self.config, self.folder = base, plan, config, folder
        self.cache, self.results, self.console = cache, results, console
        self.spec = plan.spec
        self.built: set[str] = set()
        self.journal = journal
        self.credit = 0.0
        """Seconds the interrupted run spent on the variants reused from it (counted against the budget)."""

    def clock(self) -> float:
        """The search's clock: this run's time plus the reused variants' original seconds."""
        return time.monotonic() + self.credit

    def _measure(self, path: Path) -> VariantResult:
        return measure_variant(path, self.spec, self.config.bench)

    def _reuse(self, name: str) -> VariantResult | None:
        taken = self.journal.take(name) if self.journal is not None else None
        if taken is None:
            return None
        result, seconds = taken
        self.credit += seconds
        result.notes = [*result.notes, "reused from the interrupted run (--resume)"]
        self.console.print(f"reused {name} from the interrupted run")
        return result

    def _finished(self, name: str, result: VariantResult, started: float) -> None:
        if self.journal is not None:
            self.journal.add(name, result, time.monotonic() - started)

    def baseline(self) -> VariantResult:
        started = time.monotonic()
        if (result := self._reuse("baseline")) is None:
            with self.console.status(f"measuring the baseline {self.base.manifest.name}"):
                path = self.folder / "variants" / "baseline"
                save_model(self.base, path)
                result = self._measure(path)
            result.name, result.path = f"{self.base.manifest.name} (baseline)", "variants/baseline"
            self._finished("baseline", result, started)
        fields = {f.name for f in dataclasses.fields(self.spec)}
        if result.predictions and {"baseline_predictions", "reject_below"} <= fields:
            metric = self.plan.metric
            drop = self.config.requirements.allowed_drop(result.quality.get(metric, 0.0))
            self.spec = dataclasses.replace(self.spec, baseline_predictions=list(result.predictions),
                                            reject_below=drop)
        return result

    def variant(self, recipe: Recipe) -> VariantResult:
        started = time.monotonic()
        if (reused := self._reuse(recipe.name)) is not None:
            self.built.update(prefix_key(recipe.steps[:n]) for n in range(1, len(recipe.steps) + 1))
            return reused
        target = self.folder / "variants" / recipe.name
        with self.console.status(f"building {recipe.name} ({recipe.about})"):
            variant = build(recipe, self.base, self.plan.inputs, self.cache)
            saved = save_model(variant, target)
        self.built.update(prefix_key(recipe.steps[:n]) for n in range(1, len(recipe.steps) + 1))
        cached = self.results.get(saved.manifest.fingerprint) if self.results is not None else None
        if cached is not None:
            result = cached
            result.notes = [*result.notes, "measured in an earlier run on this machine and data (cached)"]
        else:
            with self.console.status(f"measuring {recipe.name}"):
                result = self._measure(target)
            if self.results is not None and not result.notes:
                self.results.put(result)
        result.name, result.recipe = recipe.name, recipe.name
        result.path = str(target.relative_to(self.folder))
        result.notes += list(variant.manifest.metrics.get("prune", {}).get("notes", []))
        if (fewer := result.speed.latency_threads) is not None:
            result.notes.append(f"batch-1 latency measured with {fewer} intra-op thread{'s' if fewer > 1 else ''}, "
                                f"faster at batch 1 than {result.speed.threads} on this machine (throughput with "
                                f"{result.speed.threads}); serve it so for the lowest latency at low load")
        self._finished(recipe.name, result, started)
        return result

    def p95_at_batch(self, result: VariantResult, batch_size: int) -> float:
        model = load_model(self.folder / result.path)
        texts = self.spec.speed_texts or self.spec.texts[:64]
        batches = [[texts[(i * batch_size + j) % len(texts)] for j in range(batch_size)] for i in range(33)]
        model.predict(batches[0])
        times = []
        for batch in batches[1:]:
            t0 = time.perf_counter()
            model.predict(batch)
            times.append(1000 * (time.perf_counter() - t0))
        return float(np.percentile(times, 95))

    @functools.cached_property
    def validation(self) -> TextDataset:
        """The validation split the cascade and the early-exit thresholds are chosen on (read once)."""
        return validation_split(self.base, self.config.data, self.config.seed)

    def cascade(self, small: VariantResult, large: VariantResult, max_drop: float) -> VariantResult:
        return cascade_variant(self.folder, small, large, self.validation, max_drop, self._measure)

    def early_exit(self, max_drop: float) -> VariantResult:
        if self.plan.train is None or len(self.plan.train) == 0:
            raise NotApplicable("An early-exit model needs a labelled train split.", "give labelled data.")
        return early_exit_variant(self.folder, self.base, self.plan.train, self.validation, max_drop, self._measure)

    def interleaved(self, results: Sequence[VariantResult]) -> dict[str, float]:
        with self.console.status(f"re-measuring {len(results)} variants at batch 1 in interleaved rounds"):
            models = {r.name: at_threads(load_model(self.folder / r.path), r.speed.latency_threads) for r in results}
            return interleaved_p50_ms(models, self.spec.speed_texts or self.spec.texts[:64])


def _candidates(config: OptimizeConfig, base: LoadedModel, plan: EvalPlan, machine: Machine,
                console: Console) -> tuple[list[Candidate], bool]:
    """(candidates, whether this is a search) for the run."""
    if config.recipes is not None:
        n_train = len(plan.train.texts) if plan.train is not None else 0
        out = []
        for r in parse_recipes(config.recipes, base.task):
            costs, measure = step_costs(r, machine, base.num_parameters(), n_train)
            out.append(Candidate(r, "named with --recipes", costs, measure))
        return out, False
    n_train = len(plan.train.texts) if plan.train is not None else 0
    found = plan_candidates(machine, base.task, config.requirements.priority, base.num_parameters(), n_train)
    for note in found.notes:
        console.print(f"[yellow]{note}[/yellow]")
    console.print(f"machine: {machine.summary()}; candidates for {config.requirements.priority}: "
                  + ", ".join(found.names))
    return list(found.candidates), True


def _plan(config: OptimizeConfig, base: LoadedModel) -> EvalPlan:
    return plan_evaluation(base, config.data, config.eval_limit, config.seed, eval_data=config.eval_data)


def _run_result(config: OptimizeConfig, base: LoadedModel, plan: EvalPlan, found: SearchOutcome, machine: Machine,
                seconds: float) -> RunResult:
    env = environment(config.seed) | {"measured_threads": found.variants[0].speed.threads}
    run = RunResult(str(config.model), base.task, plan.data_name, found.variants, env, plan.metric)
    run.machine = machine.to_dict()
    run.requirements = config.requirements.to_dict()
    run.decisions, run.chosen, run.recommendation = found.decisions, found.chosen, found.recommendation
    run.seconds, run.price_per_hour = round(seconds, 1), config.requirements.price_per_hour
    return run


def _context(config: OptimizeConfig, base: LoadedModel) -> str:
    """What the measurements of a run depend on: an interrupted run is resumed only with the same."""
    return run_context(model=base.manifest.fingerprint or str(config.model), data=config.data,
                       eval_data=config.eval_data, eval_limit=config.eval_limit, seed=config.seed, bench=config.bench)


def _check_target(config: OptimizeConfig) -> Path:
    """The report folder, checked before any work (an interrupted run in it needs --resume or --overwrite)."""
    if config.resume and config.output is None:
        raise UserError("--resume continues the interrupted run in --output, and no --output was given.",
                        "pass --output DIR, the folder of the interrupted run.")
    target = Path(config.output or default_output()).expanduser()
    if target.is_dir() and output_kind(target) == INTERRUPTED and not (config.resume or config.overwrite):
        raise UserError(f"The output {target} holds an interrupted infopt optimize run.",
                        "pass --resume to continue it, or --overwrite to start again.")
    if config.resume:
        if target.is_dir() and output_kind(target) == "report":
            Journal.check(target, "")  # a finished report: nothing to resume
        return check_output(target, INTERRUPTED, overwrite=True)
    return check_output(target, "report", config.overwrite, replaces=(INTERRUPTED,))


def _resume_hint(config: OptimizeConfig, output: Path, journal: Journal) -> str:
    done = [n for n in journal.finished if n != "baseline"]
    kept = f"{len(done)} finished variant{'s' if len(done) != 1 else ''}" + (" and the baseline"
                                                                           if "baseline" in journal.finished else "")
    return (f"interrupted; {kept} kept in {output}. Resume with the same command and --resume "
            f"(infopt optimize ... --resume --output {output}).")


def optimize(config: OptimizeConfig, console: Console | None = None) -> tuple[RunResult, Path]:
    """Measure the baseline and search (or measure the named recipes); returns the results and the report folder.

    When a search (or a run with requirements) chooses nothing, `run.chosen` is None and the report says why;
    `--export` then writes nothing. Interrupted (KeyboardInterrupt, or SIGTERM turned into one), the finished
    variants are kept in the output for `resume` and `Interrupted` is raised."""
    started = time.monotonic()
    console = console or Console(stderr=True)
    output = _check_target(config)
    if config.export is not None:
        check_output(config.export, "export", config.overwrite)
    with console.status(f"loading {config.model}"):
        base = load_model(config.model)
    if config.recipes is not None:
        parse_recipes(config.recipes, base.task)  # bad names fail before any work
    context = _context(config, base)
    previous = Journal.check(output, context) if config.resume else {}
    plan = _plan(config, base)
    machine = Machine.probe()
    candidates, searching = _candidates(config, base, plan, machine, console)
    cache: BuildCache = BuildStore(plan.inputs) if config.reuse_builds else BuildCache()
    if config.resume and not previous:
        console.print(f"nothing to resume in {output}: starting a new run")
    with atomic_dir(output, "report", config.overwrite, replaces=(INTERRUPTED,), interrupted=INTERRUPTED) as folder:
        journal = Journal(folder, context)
        try:
            journal.adopt(output, previous)
            if previous:
                console.print(f"resuming the interrupted run in {output}: {len(previous)} finished variants "
                              "(the baseline included) can be reused")
            results = (ResultStore(base.manifest.fingerprint, plan.spec, config.bench, machine.to_dict())
                       if config.reuse_builds and base.manifest.fingerprint else None)
            bench = RunBench(base, plan, config, folder, cache, results, console, journal)
            found = search(bench, candidates, config.requirements, plan.metric, budget=searching,
                           recover=searching, cascades=searching, clock=bench.clock, log=console.print,
                           started=started)
        except KeyboardInterrupt as e:
            journal.prune()
            raise Interrupted(_resume_hint(config, output, journal), getattr(e, "signum", None)) from None
        for d in found.decisions:
            name = "baseline" if d.get("status") == "baseline" else d.get("variant")
            if name in journal.reused:
                d["action"] = "reused from the interrupted run (--resume): " + str(d.get("action", ""))
        if journal.reused:
            console.print("reused from the interrupted run: " + ", ".join(journal.reused))
        if isinstance(cache, BuildStore) and cache.hits:
            console.print(f"reused {len(cache.hits)} builds from {cache.root}")
        run = _run_result(config, base, plan, found, machine, time.monotonic() - started + bench.credit)
        for name in journal.previous:  # carried over but not tried in this run
            shutil.rmtree(folder / journal.previous[name]["path"], ignore_errors=True)
        (folder / JOURNAL).unlink(missing_ok=True)
        write_report(run, folder)
    if config.export is not None and run.chosen is not None:
        export_variant(run, output, config.export, config.overwrite)
    return run, output
