"""Optimize: recipes of compression stages, the jobs that run them, and the main job: from the user's requirements
to the best variant measured on this machine (candidates for its CPU, a budgeted search, the report, the export)."""

from infopt.optimize._build_store import BuildStore, ResultStore
from infopt.optimize._candidates import Candidate, CandidatePlan, candidate_names, plan_candidates
from infopt.optimize._config import DEFAULT_MODEL, OptimizeConfig
from infopt.optimize._distill_job import DistillJob, parse_student, run_distill_job
from infopt.optimize._export import export_variant
from infopt.optimize._jobs import PruneJob, QuantizeJob, run_stage_job
from infopt.optimize._machine import Machine
from infopt.optimize._plan import EvalPlan, plan_evaluation
from infopt.optimize._recipes import (
    DEFAULT_RECIPES,
    BuildCache,
    DistillStep,
    Recipe,
    StageInputs,
    build,
    parse_recipes,
    recipe_names,
    stage_of,
)
from infopt.optimize._requirements import PRIORITIES, Requirements, parse_duration
from infopt.optimize._run import RunBench, default_output, optimize
from infopt.optimize._search import Bench, SearchOutcome, fallback, pareto_front, search

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_RECIPES",
    "PRIORITIES",
    "Bench",
    "BuildCache",
    "BuildStore",
    "Candidate",
    "CandidatePlan",
    "DistillJob",
    "DistillStep",
    "EvalPlan",
    "Machine",
    "OptimizeConfig",
    "PruneJob",
    "QuantizeJob",
    "Recipe",
    "Requirements",
    "ResultStore",
    "RunBench",
    "SearchOutcome",
    "StageInputs",
    "build",
    "candidate_names",
    "default_output",
    "export_variant",
    "fallback",
    "optimize",
    "pareto_front",
    "parse_duration",
    "parse_recipes",
    "parse_student",
    "plan_candidates",
    "plan_evaluation",
    "recipe_names",
    "run_distill_job",
    "run_stage_job",
    "search",
    "stage_of",
]
