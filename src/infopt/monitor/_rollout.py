"""The rollout router: a current model and a candidate under one served name, a sticky share of the traffic (or a
shadow copy of all of it) to the candidate, every outcome fed to the sequential test, and the decision taken,
persisted and applied as soon as it is shown.

    router = RolloutRouter(RolloutConfig(candidate="./cand", share=0.2), "clf", "clf@candidate", registry)
    app = create_app(config, router=router)
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from infopt.monitor._config import RolloutConfig
from infopt.monitor._drift import DriftMonitor
from infopt.monitor._registry import Experiment, Registry
from infopt.monitor._sequential import RolloutTest
from infopt.serve._routing import Outcome, Route

if TYPE_CHECKING:
    from fastapi import FastAPI

    from infopt.serve import ServerState
    from infopt.serve._served import ServedModel

__all__ = ["ArmStats", "RolloutRouter"]

log = logging.getLogger(__name__)

_PENDING = 20_000


@dataclass
class ArmStats:
    """What is compared between the two models: latency, errors, cost, accuracy on labelled requests."""

    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    labelled: int = 0
    correct: float = 0.0

    def add(self, seconds: float, error: bool) -> None:
        self.requests += 1
        self.errors += error
        self.seconds += seconds
        self.latencies.append(seconds)

    def to_json(self, price_per_hour: float) -> dict[str, Any]:
        lat = np.asarray(self.latencies) * 1000
        mean_s = self.seconds / self.requests if self.requests else 0.0
        return {"requests": self.requests, "errors": self.errors,
                "error_rate": self.errors / self.requests if self.requests else None,
                "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
                "p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
                "cost_per_1k_requests": price_per_hour / 3600 * mean_s * 1000 if price_per_hour else None,
                "labelled": self.labelled, "accuracy": self.correct / self.labelled if self.labelled else None}


@dataclass
class _Pending:
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    truth: tuple[str, ...] | None = None
    paired: bool = False


class RolloutRouter:
    """Routes the served name `public` between `current` and `candidate` (served model names) while an experiment
    runs, then to the version it chose; tracks drift of the answers clients get. Thread: the event loop."""

    def __init__(self, config: RolloutConfig, public: str, candidate: str | None, registry: Registry,
                 price_per_hour: float = 0.0) -> None:
        self.config = config
        self.public = public
        self.current_name = public
        self.candidate_name = candidate
        self.registry = registry
        self.price_per_hour = price_per_hour
        self.models: Mapping[str, ServedModel] = {}
        self.fingerprints: dict[str, str] = {}
        self.live_name = public
        self.experiment: Experiment | None = None
        self.test = RolloutTest(config, points=100)
        self.arms = {"current": ArmStats(), "candidate": ArmStats()}
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self.drift = DriftMonitor(config.drift, public) if config.drift.enabled else None
        self.bound = False
        self.decisions = 0
        self.paths: dict[str, str] = {}
        """The folder / bundled name each served model was loaded from (for the registry)."""

    # ------------------------------------------------------------ Router

    def install(self, app: FastAPI, state: ServerState) -> None:
        from infopt.monitor._routes import install_rollout

        self.models = state.models
        install_rollout(app, state, self)

    def route(self, public: str, key: str | None) -> Route:
        if public != self.public:
            return Route(public)
        self._bind()
        exp = self.experiment
        if exp is None or exp.status != "running" or self.candidate_name is None:
            return Route(self.live_name)
        if self.config.shadow:
            return Route(self.current_name, mirror=self.candidate_name)
        if self.arm_of(key) == "candidate":
            return Route(self.candidate_name, mirror=self.current_name if self.config.compare else None)
        return Route(self.current_name)

    def arm_of(self, key: str | None) -> str:
        """The arm of a sticky key: a hash of the experiment and the key under `share` (no key: a coin)."""
        exp_id = self.experiment.id if self.experiment is not None else 0
        if key is None:
            u = random.random()
        else:
            digest = hashlib.sha256(f"{exp_id}:{key}".encode()).digest()
            u = int.from_bytes(digest[:8], "big") / 2 ** 64
        return "candidate" if u < self.config.share else "current"

    def observe(self, outcome: Outcome) -> None:
        if outcome.public != self.public:
            return
        if self.drift is not None and not outcome.mirrored and outcome.error is None:
            for n, label, score in zip(outcome.tokens, outcome.labels, outcome.scores, strict=False):
                self.drift.add(n, label, score)
        arm = "candidate" if outcome.model == self.candidate_name else "current"
        self.arms[arm].add(outcome.seconds, outcome.error is not None)
        samples: list[tuple[str, float]] = [(f"latency_{arm}", outcome.seconds),
                                            (f"error_{arm}", float(outcome.error is not None))]
        if arm == "candidate":
            samples.append(("error", float(outcome.error is not None)))
            if self.config.max_p95_ms is not None:
                samples.append(("slow", float(outcome.seconds * 1000 > self.config.max_p95_ms)))
        if outcome.error is None:
            pending = self.pending.setdefault(outcome.request_id, _Pending())
            self.pending.move_to_end(outcome.request_id)
            pending.labels[arm] = outcome.labels
            samples += self._pair(pending)
            while len(self.pending) > _PENDING:
                self.pending.popitem(last=False)
        self._feed(samples)

    # ------------------------------------------------------------ feedback and pairing

    def _pair(self, p: _Pending) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        if not p.paired and len(p.labels) == 2:
            cur, cand = p.labels["current"], p.labels["candidate"]
            if len(cur) == len(cand) and cur:
                p.paired = True
                out.append(("agreement", float(np.mean([a == b for a, b in zip(cur, cand, strict=True)]))))
        if p.paired and p.truth is not None:
            cur, cand, truth = p.labels["current"], p.labels["candidate"], p.truth
            d = np.mean([(c == y) - (a == y) for a, c, y in zip(cur, cand, truth, strict=True)])
            out.append(("accuracy", (float(d) + 1) / 2))
            p.truth = None  # counted once
        return out

    def feedback(self, request_id: str, labels: list[str]) -> dict[str, Any]:
        """The true labels of an answered request: accuracy per arm, and the paired test when both ran."""
        p = self.pending.get(request_id)
        if p is None:
            return {"id": request_id, "matched": False}
        truth = tuple(labels)
        for arm, predicted in p.labels.items():
            if len(predicted) == len(truth):
                self.arms[arm].labelled += 1
                self.arms[arm].correct += float(np.mean([a == y for a, y in zip(predicted, truth, strict=True)]))
        if all(len(v) == len(truth) for v in p.labels.values()):
            p.truth = truth
            self._feed(self._pair(p))
        paired = p.paired
        self.pending.pop(request_id, None) if paired else None
        return {"id": request_id, "matched": True, "paired": paired}

    # ------------------------------------------------------------ the test and its decisions

    @property
    def running(self) -> bool:
        return self.experiment is not None and self.experiment.status == "running"

    def _feed(self, samples: list[tuple[str, float]], persist: bool = True) -> None:
        """Feed the test (and the database) while the experiment runs; after its decision, nothing."""
        if not self.running:
            return
        for metric, x in samples:
            if metric in self.test.cs:
                self.test.add(metric, x)
        if persist and self.experiment is not None:
            self.registry.add_samples(self.experiment.id, samples)
            self._decide()

    def _decide(self) -> None:
        exp = self.experiment
        if exp is None or exp.status != "running":
            return
        decision, reason = self.test.decision(self.test.cs["error"].n, self.config.min_requests,
                                              time.time() - exp.started, self.config.max_duration_s)
        if decision is not None:
            self.finish(decision, reason)

    def evidence(self) -> dict[str, Any]:
        return {"bounds": [c.to_json() for c in self.test.checks()],
                "arms": {a: s.to_json(self.price_per_hour) for a, s in self.arms.items()},
                "alpha": self.config.alpha, "min_requests": self.config.min_requests}

    def finish(self, decision: str, reason: str) -> None:
        """Promote or roll back now: persisted (one transaction), logged, and routed from the next request."""
        exp = self.experiment
        assert exp is not None and self.candidate_name is not None
        name = self.candidate_name if decision == "promote" else self.current_name
        status = "promoted" if decision == "promote" else "rolled_back"
        evidence = self.evidence()
        self.registry.finish(exp.id, status, self.fingerprints[name], decision, reason, evidence)
        self.experiment = self.registry.get(exp.id)
        self.live_name = name
        self.decisions += 1
        log.warning("rollout of %r: %s after %d candidate requests (%s); evidence: %s", self.public, decision,
                    self.test.cs["error"].n, reason, evidence["bounds"])

    def switch(self, fingerprint: str, reason: str = "manual") -> str:
        """Answer with the loaded version `fingerprint` from now on (ends a running experiment); its name."""
        names = [n for n, fp in self.fingerprints.items() if fp == fingerprint]
        if not names:
            raise KeyError(fingerprint)
        exp = self.experiment
        if exp is not None and exp.status == "running":
            decision = "promote" if names[0] == self.candidate_name else "rollback"
            self.finish(decision, reason)
        self.live_name = names[0]
        self.registry.record(self.public, "switch", fingerprint, reason, {},
                             exp.id if exp is not None else None)
        return names[0]

    # ------------------------------------------------------------ start and resume

    def _bind(self) -> None:
        """On the first request (the models are loaded): register the versions, resume or start the experiment,
        and route the live version."""
        if self.bound:
            return
        self.bound = True
        for name in (self.current_name, self.candidate_name):
            served = self.models.get(name) if name else None
            if served is None or name is None:
                continue
            m = served.loaded.manifest
            fp = m.fingerprint or f"unsaved:{m.name}:{name}"
            self.fingerprints[name] = fp
            self.registry.add_version(fp, m.name, self.paths.get(name, name), m.parent, m.recipe,
                                      m.method)
        if self.drift is not None and self.config.drift.reference:
            from infopt.monitor._routes import start_reference

            start_reference(self)
        current = self.fingerprints[self.current_name]
        live = self.registry.live(self.public)
        self.live_name = next((n for n, fp in self.fingerprints.items() if fp == live), self.current_name)
        if self.candidate_name is None or self.candidate_name not in self.fingerprints:
            self.registry.set_live(self.public, self.fingerprints[self.live_name])
            return
        exp = self.registry.experiment(self.public, current, self.fingerprints[self.candidate_name],
                                       self.config.mode, self.config.share)
        self.experiment = exp
        if exp.status == "running":
            samples = self.registry.samples(exp.id)
            for metric, x in samples:
                if metric.startswith(("latency_", "error_")):
                    arm = metric.split("_", 1)[1]
                    if metric.startswith("latency_"):
                        self.arms[arm].latencies.append(x)
                        self.arms[arm].seconds += x
                        self.arms[arm].requests += 1
                    else:
                        self.arms[arm].errors += int(x)
            by_metric: dict[str, list[float]] = {}
            for metric, x in samples:
                by_metric.setdefault(metric, []).append(x)
            for metric, xs in by_metric.items():
                if metric in self.test.cs:
                    self.test.add(metric, xs)
            self.live_name = self.current_name
            log.info("rollout of %r: experiment %d %s (%d observations replayed)", self.public, exp.id,
                     "resumed" if samples else "started", len(samples))
            self._decide()
        else:
            self.live_name = self.candidate_name if exp.status == "promoted" else self.current_name

    def status(self) -> dict[str, Any]:
        """The live state (GET /v1/rollout)."""
        self._bind()
        exp = self.experiment
        out: dict[str, Any] = {
            "model": self.public, "live": self.live_name, "live_fingerprint": self.fingerprints.get(self.live_name),
            "current": {"name": self.current_name, "fingerprint": self.fingerprints.get(self.current_name)},
            "candidate": ({"name": self.candidate_name, "fingerprint": self.fingerprints.get(self.candidate_name)}
                          if self.candidate_name else None),
            "mode": self.config.mode, "share": None if self.config.shadow else self.config.share,
            "experiment": None if exp is None else {"id": exp.id, "status": exp.status, "started": exp.started,
                                                    "ended": exp.ended, "reason": exp.reason},
            "decisions": self.registry.decisions(self.public, limit=5),
            "drift": self.drift.to_json() if self.drift is not None else None,
            "database": str(self.registry.path),
        }
        out.update(self.evidence())
        return out

    def banner(self) -> list[str]:
        c = self.config
        lines = []
        if self.candidate_name:
            how = "a shadow copy of every request" if c.shadow else f"{c.share:g} of the traffic (sticky per key)"
            p95 = f", p{c.quantile * 100:g} <= {c.max_p95_ms:g} ms" if c.max_p95_ms is not None else ""
            lines.append(f"  rollout: {self.candidate_name} gets {how} of {self.public}; bounds: quality drop <= "
                         f"{c.max_quality_drop:g}, error rate <= {c.max_error_rate:g}{p95}; alpha {c.alpha:g}, "
                         f"min {c.min_requests} requests; state in {self.registry.path}")
        if self.drift is not None:
            d = c.drift
            lines.append(f"  drift: window {d.window}, PSI > {d.psi_threshold:g} or KS > {d.ks_threshold:g} alerts "
                         f"(reference: {d.reference or 'the first requests'})")
        lines.append("  rollout state: GET /v1/rollout (infopt rollout status URL); labels: POST /v1/feedback")
        return lines
