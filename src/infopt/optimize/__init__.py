"""Optimize: build variants of a model, measure each against the baseline, report side by side."""

from infopt.optimize._config import DEFAULT_MODEL, OptimizeConfig
from infopt.optimize._run import default_output, optimize, plan_evaluation
from infopt.optimize._variants import DEFAULT_SCHEMES, Candidate, candidates

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_SCHEMES",
    "Candidate",
    "OptimizeConfig",
    "candidates",
    "default_output",
    "optimize",
    "plan_evaluation",
]
