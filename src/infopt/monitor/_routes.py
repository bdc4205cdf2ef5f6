"""The rollout's HTTP endpoints and Prometheus series: POST /v1/feedback (true labels of answered requests),
GET /v1/rollout (the live state), POST /v1/rollout/switch (an atomic switch to a loaded version: loopback only, or
to the admin key when [auth] is on);
`infopt_rollout_*` and `infopt_drift_*` in /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, StrictStr

from infopt.serve import RequestError, ServerState
from infopt.serve._config import is_loopback

if TYPE_CHECKING:
    from infopt.monitor._rollout import RolloutRouter

__all__ = ["RolloutCollector", "install_rollout", "start_reference"]

log = logging.getLogger(__name__)

_STATES = ("none", "running", "promoted", "rolled_back")


class FeedbackRequest(BaseModel):
    """`POST /v1/feedback`: the `id` of a classify answer and the true label (or one per input)."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr
    label: StrictStr | None = None
    labels: list[StrictStr] | None = None


class SwitchRequest(BaseModel):
    """`POST /v1/rollout/switch`: the fingerprint of a loaded version to answer from now on."""

    model_config = ConfigDict(extra="forbid")

    fingerprint: StrictStr
    reason: StrictStr = "manual switch"


class RolloutCollector:
    """The rollout's state, arms, bounds and decisions, and the drift statistics, as Prometheus series."""

    def __init__(self, router: RolloutRouter) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        r = self.router
        model = r.public
        exp = r.experiment
        state = GaugeMetricFamily("infopt_rollout_state", "1 for the rollout's state.", labels=["model", "state"])
        now = exp.status if exp is not None else "none"
        for s in _STATES:
            state.add_metric([model, s], 1.0 if s == now else 0.0)
        yield state
        decisions = CounterMetricFamily("infopt_rollout_decisions", "Promotions and rollbacks taken by this server.",
                                        labels=["model", "decision"])
        decisions.add_metric([model, exp.status if exp is not None and exp.status != "running" else "none"],
                             float(r.decisions))
        yield decisions
        arms = {name: stats.to_json(r.price_per_hour) for name, stats in r.arms.items()}
        for key, help_text in (("requests", "Requests observed by arm."), ("error_rate", "Failed share by arm."),
                               ("p50_ms", "Median latency (ms) by arm."), ("p95_ms", "p95 latency (ms) by arm."),
                               ("cost_per_1k_requests", "price_per_hour x mean latency x 1,000, by arm."),
                               ("accuracy", "Accuracy on labelled requests by arm.")):
            g = GaugeMetricFamily(f"infopt_rollout_{key}", help_text, labels=["model", "arm"])
            for arm, values in arms.items():
                if values[key] is not None:
                    g.add_metric([model, arm], float(values[key]))
            yield g
        bound = GaugeMetricFamily("infopt_rollout_bound", "Each bound's estimate, confidence bounds and boundary.",
                                  labels=["model", "bound", "value"])
        status = GaugeMetricFamily("infopt_rollout_bound_status", "1 shown good, -1 shown bad, 0 open.",
                                   labels=["model", "bound"])
        for c in r.test.checks():
            for value in ("estimate", "lower", "upper", "boundary"):
                v = getattr(c, value)
                if v is not None:
                    bound.add_metric([model, c.name, value], float(v))
            status.add_metric([model, c.name], {"good": 1.0, "bad": -1.0, "open": 0.0}[c.status])
        yield bound
        yield status
        if r.drift is not None:
            alert = GaugeMetricFamily("infopt_drift_alert", "1 while a feature drifted past its threshold.",
                                      labels=["model", "feature"])
            stat = GaugeMetricFamily("infopt_drift_statistic", "PSI / KS of the window against the reference.",
                                     labels=["model", "feature", "statistic"])
            for feature, on in r.drift.alerts.items():
                alert.add_metric([model, feature], 1.0 if on else 0.0)
            for feature, values in r.drift.stats.items():
                for name, v in values.items():
                    stat.add_metric([model, feature, name], v)
            yield alert
            yield stat


def start_reference(router: RolloutRouter) -> None:
    """Run the drift reference (a dataset's validation split) through the current model in the background."""
    task = asyncio.get_running_loop().create_task(_reference(router), name="infopt-drift-reference")
    router.reference_task = task  # type: ignore[attr-defined]


async def _reference(router: RolloutRouter) -> None:
    from infopt.data import BUNDLED_DATASETS, DataConfig, load_dataset, split_dataset

    cfg = router.config.drift
    assert cfg.reference is not None and router.drift is not None
    served = router.models[router.current_name]
    try:
        columns = (None, None) if cfg.reference in BUNDLED_DATASETS else ("text", "label")
        data = await asyncio.to_thread(load_dataset, DataConfig(cfg.reference, *columns))
        texts = split_dataset(data).validation.texts[: cfg.reference_limit]
        lengths, labels, scores = [], [], []
        for start in range(0, len(texts), 32):
            encoded = served.check("classification", list(texts[start:start + 32]), True)
            outputs = await served.infer(encoded)
            for e, p in zip(encoded, outputs, strict=True):
                best = max(range(len(p)), key=p.__getitem__)
                lengths.append(len(e["input_ids"]))
                labels.append(served.labels[best] if best < len(served.labels) else f"LABEL_{best}")
                scores.append(float(p[best]))
        router.drift.set_reference(lengths, labels, scores, source=f"{cfg.reference} validation ({len(texts)})")
        log.info("drift reference of %r: %d texts of %s", router.public, len(texts), cfg.reference)
    except Exception:
        log.exception("the drift reference %s could not be built; the first requests are the reference instead",
                      cfg.reference)


def install_rollout(app: FastAPI, state: ServerState, router: RolloutRouter) -> None:
    """The endpoints and the Prometheus collector of `router`."""
    state.metrics.registry.register(RolloutCollector(router))

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackRequest) -> JSONResponse:
        labels = body.labels if body.labels is not None else [body.label] if body.label is not None else None
        if not labels:
            raise RequestError("The feedback has no label.", 'send "label": "..." (or "labels": [...], one per '
                               "input).", code="missing_label", param="label")
        result = router.feedback(body.id, labels)
        if not result["matched"]:
            return JSONResponse({"error": {"message": f"No recent answer has id {body.id!r}.", "type":
                                           "invalid_request_error", "param": "id", "code": "unknown_id"}},
                                status_code=404)
        return JSONResponse(result)

    @app.get("/v1/rollout")
    async def rollout() -> dict[str, Any]:
        return router.status()

    @app.post("/v1/rollout/switch")
    async def switch(body: SwitchRequest) -> JSONResponse:
        if not is_loopback(state.config.host) and not state.config.auth.enabled:  # with [auth]: the admin key only
            return JSONResponse({"error": {"message": "Switching versions is served on loopback hosts only (or to "
                                           "the admin key of [auth]).",
                                           "type": "invalid_request_error", "param": None, "code": "forbidden"}},
                                status_code=403)
        try:
            name = router.switch(body.fingerprint, body.reason)
        except KeyError:
            loaded = ", ".join(sorted(set(router.fingerprints.values())))
            raise RequestError(f"Version {body.fingerprint!r} is not loaded on this server.",
                               f"switch to one of {loaded}, or serve that version as the candidate.",
                               code="unknown_version", param="fingerprint") from None
        return JSONResponse({"model": router.public, "live": name, "live_fingerprint": body.fingerprint})
