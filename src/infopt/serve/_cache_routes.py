"""The cache admin endpoints: `POST /v1/cache/purge`, `POST /v1/cache/invalidate` (`{"tag": ...}` or
`{"model": NAME}`) and `GET /v1/cache/stats`.

They are installed when `cache.admin` is true, or, when it is not set, when the server listens on a loopback
address or has [auth] on (see `ServeCacheConfig.admin_on`). With [auth] on, the middleware lets only the admin key
reach them (403 for other keys; see `infopt.serve._auth.ADMIN_PATHS`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, StrictStr, model_validator

from infopt.serve._caching import ResponseCache
from infopt.serve._errors import RequestError
from infopt.serve._state import ServerState

__all__ = ["InvalidateRequest", "install_cache_routes"]


class InvalidateRequest(BaseModel):
    """`POST /v1/cache/invalidate`: exactly one of `tag` (entries stored with that `X-Infopt-Cache-Tags` tag) or
    `model` (every entry of that served model's current fingerprint)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    tag: StrictStr | None = None
    model: StrictStr | None = None

    @model_validator(mode="after")
    def _one(self) -> InvalidateRequest:
        if (self.tag is None) == (self.model is None):
            raise ValueError('send exactly one of "tag" and "model"')
        return self


def install_cache_routes(app: FastAPI, state: ServerState, cache: ResponseCache) -> None:
    """Add the admin endpoints to `app` (when `cache.admin`)."""
    if not cache.admin:
        return

    @app.post("/v1/cache/purge")
    async def purge() -> dict[str, Any]:
        return {"purged": await asyncio.to_thread(cache.run_admin, "purge")}

    @app.post("/v1/cache/invalidate")
    async def invalidate(body: InvalidateRequest) -> dict[str, Any]:
        if body.tag is not None:
            return {"tag": body.tag, "invalidated": await asyncio.to_thread(cache.run_admin, "invalidate_tag",
                                                                            body.tag)}
        assert body.model is not None
        served = state.models.get(body.model)
        if served is None:
            raise RequestError(f"Model {body.model!r} is not served here (or not loaded yet).",
                               "pass the name of a served model (GET /v1/models).", code="model_not_found",
                               param="model")
        fingerprint = await asyncio.to_thread(cache.fingerprint, served)
        n = await asyncio.to_thread(cache.run_admin, "invalidate_model", fingerprint)
        return {"model": body.model, "fingerprint": fingerprint, "invalidated": n}

    @app.get("/v1/cache/stats")
    async def stats() -> dict[str, Any]:
        return await asyncio.to_thread(cache.stats)
