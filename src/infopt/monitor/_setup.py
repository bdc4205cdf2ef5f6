"""What `infopt serve` and `infopt rollout` need: a ServeConfig's [rollout] table turned into the candidate's
model spec and the router, and the live state of a running server in words.

    config, router = prepare_rollout(serve_config(["clf=./current"], candidate="./cand", share=0.2))
    launch(config, router=router)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from infopt.errors import UserError
from infopt.monitor._config import RolloutConfig
from infopt.monitor._registry import Registry
from infopt.monitor._rollout import RolloutRouter
from infopt.serve import ModelSpec, ServeConfig

__all__ = ["CANDIDATE_SUFFIX", "prepare_rollout", "status_lines"]

CANDIDATE_SUFFIX = "@candidate"
"""The candidate is served under `<model>@candidate` (clients ask for `<model>`; the router picks)."""


def prepare_rollout(config: ServeConfig, registry: Registry | None = None,
                    ) -> tuple[ServeConfig, RolloutRouter | None]:
    """`config` with the candidate added to its models, and the router of its [rollout] table (None: no table)."""
    if not config.rollout:
        return config, None
    rollout = RolloutConfig.from_table(config.rollout)
    public = rollout.model or config.models[0].name
    spec = config.model(public)
    if spec is None:
        raise UserError(f"rollout.model {public!r} is not a served model.",
                        f"name one of {', '.join(m.name for m in config.models)}.")
    candidate = None
    models = config.models
    if rollout.candidate is not None:
        candidate = public + CANDIDATE_SUFFIX
        if config.model(candidate) is not None:
            raise UserError(f"A served model is already named {candidate!r}.", "rename it.")
        models = (*models, ModelSpec(candidate, rollout.candidate))
    router = RolloutRouter(rollout, public, candidate, registry or Registry(rollout.database_path),
                           config.price_per_hour)
    router.paths = {m.name: m.path for m in models}
    return dataclasses.replace(config, models=models), router


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def _num(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def status_lines(state: dict[str, Any]) -> list[str]:
    """GET /v1/rollout in words (for `infopt rollout status`)."""
    exp = state.get("experiment")
    cand = state.get("candidate") or {}
    lines = [f"model {state['model']}: live {state['live']} (fingerprint {state.get('live_fingerprint')})"]
    if exp:
        how = "shadow" if state["mode"] == "shadow" else f"split, share {state['share']:g}"
        lines.append(f"experiment {exp['id']}: {exp['status']} ({how}); candidate {cand.get('name')} "
                     f"({cand.get('fingerprint')})" + (f": {exp['reason']}" if exp.get("reason") else ""))
    else:
        lines.append("no experiment (no candidate)")
    lines.append(f"  {'arm':<10} {'requests':>8} {'errors':>7} {'p50':>10} {'p95':>10} {'cost/1k':>9} {'accuracy':>9}")
    for arm, a in state["arms"].items():
        lines.append(f"  {arm:<10} {a['requests']:>8} {a['errors']:>7} {_ms(a['p50_ms']):>10} {_ms(a['p95_ms']):>10} "
                     f"{_num(a['cost_per_1k_requests'], 4):>9} {_num(a['accuracy']):>9}")
    lines.append(f"  bounds (alpha {state['alpha']:g}, anytime-valid; min {state['min_requests']} requests):")
    for b in state["bounds"]:
        lines.append(f"    {b['bound']:<22} {b['status']:<5} estimate {_num(b['estimate'])} in "
                     f"[{_num(b['lower'])}, {_num(b['upper'])}] vs {b['boundary']:g} (n {b['n']})")
    drift = state.get("drift")
    if drift:
        alerts = [f for f, on in drift["alerts"].items() if on]
        lines.append(f"drift: {'ALERT on ' + ', '.join(alerts) if alerts else 'no alert'}; "
                     f"{drift['inputs_seen']} inputs, reference {drift['reference']}")
        for f, st in drift["stats"].items():
            lines.append(f"    {f:<11} " + ", ".join(f"{k} {v:.3f}" for k, v in st.items()))
    for d in state.get("decisions", [])[:3]:
        lines.append(f"decision: {d['decision']} -> {d['fingerprint']}: {d['reason']}")
    return lines
