"""The seam between the server and a rollout: a `Router` maps the model name a client asks for (and the client's
sticky key) to the served model that answers, and may name a second one run in the background on the same input
(a shadow copy the client never sees); it is told every outcome. The default router is the identity.

    app = create_app(config, router=my_router)        # infopt.monitor builds the rollout router
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fastapi import Request

from infopt.serve._caching import tenant_of

if TYPE_CHECKING:
    from fastapi import FastAPI

    from infopt.serve._served import ServedModel
    from infopt.serve._state import ServerState

__all__ = ["USER_HEADER", "IdentityRouter", "Outcome", "Route", "Router", "classify_outcome", "observe_safely",
           "run_mirror", "sticky_key"]

log = logging.getLogger(__name__)

USER_HEADER = "X-User"
"""A client's user id, for sticky routing (else its tenant: `X-Tenant` or the API key)."""


@dataclass(frozen=True)
class Route:
    """Who answers a request (`answer`, a served model's name) and who, if anyone, also runs it in the background
    (`mirror`: its answer is only observed, never sent)."""

    answer: str
    mirror: str | None = None


@dataclass(frozen=True)
class Outcome:
    """One model run of a classify request: the answer the client got, or a background (`mirrored`) copy."""

    request_id: str
    public: str
    """The model name the client asked for."""
    model: str
    """The served model that ran."""
    mirrored: bool
    seconds: float
    """Queue plus inference time of the run."""
    error: str | None = None
    """The error code when the run failed (then no labels)."""
    labels: tuple[str, ...] = ()
    """The predicted label of each input."""
    scores: tuple[float, ...] = ()
    """The probability of each predicted label."""
    tokens: tuple[int, ...] = ()
    """The token count of each input."""


class Router(Protocol):
    """What the app asks: `route` before each classify request, `observe` after each model run (answer or mirror);
    `install` once, to add its own endpoints and metrics."""

    def install(self, app: FastAPI, state: ServerState) -> None: ...

    def route(self, public: str, key: str | None) -> Route: ...

    def observe(self, outcome: Outcome) -> None: ...


class IdentityRouter:
    """Every name answers for itself; nothing is observed."""

    def install(self, app: FastAPI, state: ServerState) -> None:
        return None

    def route(self, public: str, key: str | None) -> Route:
        return Route(public)

    def observe(self, outcome: Outcome) -> None:
        return None


def sticky_key(request: Request) -> str | None:
    """The key a client is routed by: `X-User`, else its tenant (`X-Tenant`, the API key), else None."""
    user = request.headers.get(USER_HEADER, "").strip()
    return f"user:{user}" if user else tenant_of(request)


def classify_outcome(request_id: str, public: str, model: str, mirrored: bool, seconds: float,
                     outputs: list[list[float]] | None, labels: list[str], tokens: list[int],
                     error: str | None = None) -> Outcome:
    """The outcome of a classify run from its probabilities (None: it failed with `error`)."""
    if outputs is None:
        return Outcome(request_id, public, model, mirrored, seconds, error or "error", tokens=tuple(tokens))
    best = [max(range(len(p)), key=p.__getitem__) for p in outputs]
    names = [labels[b] if b < len(labels) else f"LABEL_{b}" for b in best]
    return Outcome(request_id, public, model, mirrored, seconds, None, tuple(names),
                   tuple(float(p[b]) for p, b in zip(outputs, best, strict=True)), tuple(tokens))


def _safe(observe: Callable[[Outcome], None], outcome: Outcome) -> None:
    try:
        observe(outcome)
    except Exception:  # a monitor's bug never reaches a client
        log.exception("the router failed to observe an outcome")


_TASKS: set[asyncio.Task[None]] = set()


def run_mirror(router: Router, models: Mapping[str, ServedModel], name: str, public: str, request_id: str,
               texts: list[str], truncate: bool) -> None:
    """Run `texts` through the served model `name` in the background and tell `router`; whatever happens there
    (a full queue, a crash, a slow model) stays there."""
    served = models.get(name)
    if served is None:
        return

    async def run() -> None:
        start = time.perf_counter()
        tokens: list[int] = []
        try:
            encoded = served.check("classification", texts, truncate)
            tokens = [len(e["input_ids"]) for e in encoded]
            outputs: list[list[float]] | None = await served.infer(encoded)
            error = None
        except Exception as e:
            outputs, error = None, str(getattr(e, "code", "") or type(e).__name__)
        _safe(router.observe, classify_outcome(request_id, public, name, True, time.perf_counter() - start,
                                               outputs, served.labels, tokens, error))

    task = asyncio.get_running_loop().create_task(run(), name=f"infopt-mirror-{name}")
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


def observe_safely(router: Router, outcome: Outcome) -> None:
    """`router.observe(outcome)`, its exceptions logged, never raised."""
    _safe(router.observe, outcome)

