"""Watch served models and roll candidates out safely: a candidate beside the current model under one name (a
sticky share of the traffic, or a shadow copy), an anytime-valid sequential test against the user's bounds that
promotes or rolls back by itself, drift alerts, and a SQLite registry that survives restarts.

    config, router = prepare_rollout(serve_config(["clf=./current"], None, candidate="./cand", shadow=True))
    launch(config, router=router)
"""

from infopt.monitor._config import DriftConfig, RolloutConfig, default_database
from infopt.monitor._drift import DriftMonitor, DriftSettings, ks_statistic, psi
from infopt.monitor._registry import Experiment, Registry
from infopt.monitor._rollout import ArmStats, RolloutRouter
from infopt.monitor._sequential import BettingCS, BoundCheck, RolloutTest, TestBounds
from infopt.monitor._setup import CANDIDATE_SUFFIX, prepare_rollout, status_lines

__all__ = [
    "CANDIDATE_SUFFIX",
    "ArmStats",
    "BettingCS",
    "BoundCheck",
    "DriftConfig",
    "DriftMonitor",
    "DriftSettings",
    "Experiment",
    "Registry",
    "RolloutConfig",
    "RolloutRouter",
    "RolloutTest",
    "TestBounds",
    "default_database",
    "ks_statistic",
    "prepare_rollout",
    "psi",
    "status_lines",
]
