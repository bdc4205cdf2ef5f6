"""Optimize: recipes of compression stages, the jobs that run them, and the main job that measures them all."""

from infopt.optimize._config import DEFAULT_MODEL, OptimizeConfig
from infopt.optimize._distill_job import DistillJob, parse_student, run_distill_job
from infopt.optimize._jobs import PruneJob, QuantizeJob, run_stage_job
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
from infopt.optimize._run import default_output, optimize

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_RECIPES",
    "BuildCache",
    "DistillJob",
    "DistillStep",
    "EvalPlan",
    "OptimizeConfig",
    "PruneJob",
    "QuantizeJob",
    "Recipe",
    "StageInputs",
    "build",
    "default_output",
    "optimize",
    "parse_recipes",
    "parse_student",
    "plan_evaluation",
    "recipe_names",
    "run_distill_job",
    "run_stage_job",
    "stage_of",
]
