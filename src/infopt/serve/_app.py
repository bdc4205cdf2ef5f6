"""The FastAPI app: classify, OpenAI-compatible embeddings, completions, chat completions and models, health,
readiness, metrics, stats; the response caches in front of every model, and their admin endpoints.

    app = create_app(load_serve_config("serve.toml"))          # models load in the background (/ready says when)
    app = create_app({"clf": load_model("minilm-l6-rt")})       # models already in memory: ready at once
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from infopt.models import LoadedModel, load_model
from infopt.serve._auth import Authenticator
from infopt.serve._cache_routes import install_cache_routes
from infopt.serve._caching import CacheCollector, ResponseCache, SemanticTier
from infopt.serve._config import ModelSpec, ServeConfig
from infopt.serve._errors import RequestError, WrongTask
from infopt.serve._http import Admission, ServeMiddleware, guard_logs, info_of, install_handlers
from infopt.serve._lm_routes import install_lm_routes, lm_hit_path
from infopt.serve._metrics import PROMETHEUS_CONTENT_TYPE
from infopt.serve._routing import IdentityRouter, Router, classify_outcome, observe_safely, run_mirror, sticky_key
from infopt.serve._schemas import ClassifyRequest, EmbeddingsRequest
from infopt.serve._served import Encoded, ServedModel
from infopt.serve._state import Loader, ServerState

__all__ = ["create_app"]

_BATCHED = frozenset({"/v1/classify", "/v1/embeddings"})
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')


def _config_for(source: ServeConfig | Mapping[str, LoadedModel], config: ServeConfig | None) -> ServeConfig:
    if isinstance(source, ServeConfig):
        return source
    specs = tuple(ModelSpec(name, f"<in memory: {m.manifest.name}>") for name, m in source.items())
    return dataclasses.replace(config, models=specs) if config is not None else ServeConfig(models=specs)


def _texts(state: ServerState, value: str | list[Any]) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise RequestError("The input is empty.", "send a text or a non-empty list of texts.", code="empty_input",
                           param="input")
    if not all(isinstance(t, str) for t in texts):
        raise RequestError("The input holds token ids; this server takes texts only (token ids differ between "
                           "tokenizers).", "send the texts themselves.", code="invalid_input", param="input")
    if len(texts) > state.config.max_inputs:
        raise RequestError(f"The request has {len(texts)} inputs; this server takes at most "
                           f"{state.config.max_inputs} per request.", "split it into several requests.",
                           code="too_many_inputs", param="input")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise RequestError(f"Input {empty[0]} is an empty string.", "remove empty texts from the input.",
                           code="empty_input", param="input")
    return texts


def _model(state: ServerState, request: Request, name: str) -> ServedModel:
    info_of(request).model = name if state.config.model(name) is not None else "unknown"
    return state.model(name)


def _prepare(state: ServerState, request: Request, name: str, task: str, value: str | list[Any],
             truncate: bool) -> tuple[ServedModel, list[Encoded], list[int]]:
    """The served model, the texts tokenized and their token counts, after every check (before any cache or
    queue)."""
    served = _model(state, request, name)
    encoded = served.check(task, _texts(state, value), truncate)
    return served, encoded, [len(e["input_ids"]) for e in encoded]


async def _infer(state: ServerState, served: ServedModel, encoded: list[Encoded], counts: list[int],
                 ) -> list[list[float]]:
    outputs = await served.infer(encoded)
    state.metrics.counted(served.name, sum(counts))
    return outputs


def _shed(state: ServerState, path: str, raw: bytes) -> Admission | None:
    """The door of a classify / embeddings request to a served model, before parsing and routing: refused when its
    queue is full (cached answers included: under overload the door stays cheap), else counted until answered."""
    if path not in _BATCHED or state.status != "ready":
        return None
    name = _MODEL_FIELD.search(raw[:512])
    served = state.models.get(name.group(1).decode()) if name else None
    if served is None:
        return None
    return Admission(served.name, served.batcher.admit(), served.batcher.leave)


def _base64(vector: list[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def create_app(source: ServeConfig | Mapping[str, LoadedModel], *, config: ServeConfig | None = None,
               loader: Loader = load_model, semantic: SemanticTier | None = None,
               router: Router | None = None) -> FastAPI:
    """An app serving the models of a `ServeConfig` (loaded in the background with `loader`) or the given
    `{name: LoadedModel}` (then `config`, if given, supplies the limits, batching and cache; its models are
    replaced). The config's exact and prompt caches answer first; `semantic` (optional) is asked after them.
    `router` (default: the identity) picks the served model that answers each classify request (see
    `infopt.serve._routing`; `infopt.monitor` builds rollouts on it)."""
    preloaded = None if isinstance(source, ServeConfig) else dict(source)
    if preloaded is not None and not preloaded:
        raise RequestError("create_app got no models.", "pass a ServeConfig or a non-empty {name: LoadedModel}.")
    state = ServerState(_config_for(source, config), preloaded=preloaded, loader=loader)
    auth = Authenticator(state.config.auth) if state.config.auth.enabled else None  # env keys are read here
    cache = ResponseCache(state.config.cache, semantic,
                          admin=state.config.cache.admin_on(state.config.host, auth is not None))
    guard_logs(state.config.log_bodies)
    state.metrics.registry.register(CacheCollector(cache))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await cache.open()
        guard_logs(state.config.log_bodies)  # again: the semantic tier's modules load with the cache
        await state.start()
        try:
            yield
            await state.drain(state.config.batching.timeout_s)
        finally:
            await cache.close()

    app = FastAPI(title="infopt serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.infopt = state
    app.state.infopt_cache = cache
    install_handlers(app, log_bodies=state.config.log_bodies)
    app.add_middleware(ServeMiddleware, metrics=state.metrics, max_body_bytes=state.config.max_body_bytes,
                       shed=lambda path, raw: _shed(state, path, raw), auth=auth,
                       log_bodies=state.config.log_bodies, hits=lm_hit_path(state, cache))
    if auth is not None:
        state.metrics.auth_reasons()

    routing: Router = router if router is not None else IdentityRouter()

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest, request: Request) -> Response:
        _model(state, request, body.model)
        route = routing.route(body.model, sticky_key(request))
        served, encoded, counts = _prepare(state, request, route.answer, "classification", body.input, body.truncate)
        request_id = "clf-" + uuid.uuid4().hex[:24]

        async def compute() -> dict[str, Any]:
            start = time.perf_counter()
            try:
                outputs = await _infer(state, served, encoded, counts)
            except Exception as e:
                observe_safely(routing, classify_outcome(request_id, body.model, served.name, False,
                                                         time.perf_counter() - start, None, served.labels, counts,
                                                         str(getattr(e, "code", "") or type(e).__name__)))
                raise
            observe_safely(routing, classify_outcome(request_id, body.model, served.name, False,
                                                     time.perf_counter() - start, outputs, served.labels, counts))
            if route.mirror is not None:
                texts = [body.input] if isinstance(body.input, str) else list(body.input)
                run_mirror(routing, state.models, route.mirror, body.model, request_id, texts, body.truncate)
            labels = served.labels or [f"LABEL_{i}" for i in range(len(outputs[0]))]
            data = []
            for i, probs in enumerate(outputs):
                best = max(range(len(probs)), key=probs.__getitem__)
                data.append({"index": i, "label": labels[best], "score": probs[best],
                             "probabilities": dict(zip(labels, probs, strict=True))})
            tokens = sum(counts)
            return {"id": request_id, "object": "list", "model": body.model, "data": data,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

        return await cache.answer(request, "/v1/classify", body, served, compute)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        if body.dimensions is not None:
            served = _model(state, request, body.model)
            if served.task == "embedding" and body.dimensions != served.dimensions:
                raise WrongTask(f"Model {body.model!r} gives {served.dimensions}-dimensional embeddings, not "
                                f"{body.dimensions}.", "leave out dimensions, or pass the model's own size.")
        served, encoded, counts = _prepare(state, request, body.model, "embedding", body.input, body.truncate)

        async def compute() -> dict[str, Any]:
            outputs = await _infer(state, served, encoded, counts)
            encode = _base64 if body.encoding_format == "base64" else (lambda v: v)
            data = [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(outputs)]
            tokens = sum(counts)
            return {"object": "list", "data": data, "model": body.model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

        return await cache.answer(request, "/v1/embeddings", body, served, compute)

    install_lm_routes(app, state, cache)
    install_cache_routes(app, state, cache)
    routing.install(app, state)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [m.info() for m in state.models.values()]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        body: dict[str, Any] = {"status": state.status, "models": sorted(state.models)}
        if state.error:
            body["error"] = state.error
        return JSONResponse(body, status_code=200 if state.status == "ready" else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        for name, m in state.models.items():
            state.metrics.queue_depth(name, m.depth)
        body = await asyncio.to_thread(state.metrics.render)  # the cache's collector may ask SQLite / Redis
        return Response(body, media_type=PROMETHEUS_CONTENT_TYPE)

    @app.get("/v1/stats")
    async def stats() -> dict[str, Any]:
        return {"status": state.status, **state.metrics.stats.to_json(), "cache": await asyncio.to_thread(cache.stats)}

    return app
