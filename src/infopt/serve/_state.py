"""The life of a server: loading (models load in the background), ready, draining; and its served models."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from infopt.errors import InfoptError
from infopt.evaluate import at_threads
from infopt.models import LoadedModel, load_model
from infopt.serve._config import ServeConfig
from infopt.serve._errors import RequestError, Unavailable
from infopt.serve._metrics import Metrics
from infopt.serve._served import ServedModel

__all__ = ["Loader", "ServerState", "Status"]

log = logging.getLogger(__name__)

Status = Literal["loading", "ready", "draining", "failed"]
Loader = Callable[[str | Path], LoadedModel]


class ServerState:
    """Models by name, the status, and the metrics of one app; `start()` and `drain()` run on its event loop."""

    def __init__(self, config: ServeConfig, *, preloaded: Mapping[str, LoadedModel] | None = None,
                 loader: Loader = load_model) -> None:
        self.config = config
        self.preloaded = dict(preloaded or {})
        self.loader = loader
        self.metrics = Metrics(config.price_per_hour)
        self.models: dict[str, ServedModel] = {}
        self.status: Status = "loading"
        self.error: str | None = None
        self.on_load_error: Callable[[BaseException], None] | None = None
        self._loading: asyncio.Task[None] | None = None

    def _add(self, name: str, loaded: LoadedModel) -> None:
        served = ServedModel(name, loaded, self.config.batching, observer=self.metrics, engine=self.config.engine)
        served.start()
        self.metrics.add_model(name, generative=served.generator is not None)
        self.models[name] = served

    async def start(self) -> None:
        """Serve the preloaded models at once, or start loading the configured ones in the background."""
        if self.preloaded:
            for name, loaded in self.preloaded.items():
                self._add(name, loaded)
            self._set("ready")
        else:
            self._loading = asyncio.get_running_loop().create_task(self._load(), name="infopt-load-models")

    async def _load(self) -> None:
        try:
            for spec in self.config.models:
                log.info("loading model %r from %s", spec.name, spec.path)
                loaded = await asyncio.to_thread(self.loader, spec.path)
                if spec.threads is not None:
                    loaded = await asyncio.to_thread(at_threads, loaded, spec.threads)
                if self.status != "loading":  # drained while loading
                    return
                self._add(spec.name, loaded)
        except Exception as e:
            self.error = str(e) if isinstance(e, InfoptError) else f"{type(e).__name__}: {e}"
            log.error("loading the models failed: %s", self.error, exc_info=not isinstance(e, InfoptError))
            self._set("failed")
            if self.on_load_error is not None:
                self.on_load_error(e)
            return
        self._set("ready")
        log.info("ready: %s", ", ".join(self.models))

    def _set(self, status: Status) -> None:
        self.status = status
        self.metrics.ready.set(1 if status == "ready" else 0)

    def model(self, name: str) -> ServedModel:
        """The served model `name`; raises RequestError (unknown) or Unavailable (loading, draining, failed)."""
        if self.config.model(name) is None and name not in self.models:
            raise RequestError(f"Model {name!r} is not served here.",
                               f"use one of {', '.join(m.name for m in self.config.models)} (GET /v1/models).",
                               code="model_not_found", param="model")
        if self.status == "draining":
            raise Unavailable("The server is shutting down.", "retry on another replica or after the restart.",
                              code="draining")
        if self.status == "failed":
            raise Unavailable(f"The server failed to load its models ({self.error}).", "fix the config and restart.",
                              code="load_failed")
        if name not in self.models:
            raise Unavailable(f"Model {name!r} is still loading.", "retry in a few seconds (GET /ready says when).",
                              code="loading")
        return self.models[name]

    async def drain(self, timeout_s: float | None = None) -> None:
        """Readiness goes 503 and new requests get 503; the accepted ones finish (idempotent)."""
        if self.status != "failed":
            self._set("draining")
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        await asyncio.gather(*(m.drain(timeout_s) for m in self.models.values()))
