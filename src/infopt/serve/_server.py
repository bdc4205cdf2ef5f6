"""Run a server with uvicorn: loopback by default; SIGTERM / SIGINT drain it (readiness 503, new requests 503,
accepted ones finish), then it exits; a second signal exits at once."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from types import FrameType

import uvicorn

from infopt.serve._app import create_app
from infopt.serve._config import ServeConfig
from infopt.serve._routing import Router
from infopt.serve._state import Loader, ServerState

__all__ = ["run_server"]

log = logging.getLogger(__name__)


class _DrainingServer(uvicorn.Server):
    """uvicorn, except that the first signal drains the models before uvicorn shuts down (and exits 0)."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state
        self.signalled = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.signalled or self.loop is None:
            super().handle_exit(sig, frame)  # second signal: uvicorn's own (force) exit
            return
        self.signalled = True
        log.info("got %s: draining", signal.Signals(sig).name)
        self.loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await self.state.drain(self.state.config.batching.timeout_s)
        finally:
            self.should_exit = True


def run_server(config: ServeConfig, *, loader: Loader | None = None, log_level: str = "info",
               router: Router | None = None) -> None:
    """Serve `config` until SIGTERM / SIGINT; raises the loading error if a model fails to load. `router` (e.g.
    infopt.monitor's rollout) picks the model that answers each classify request."""
    app = create_app(config, router=router) if loader is None else create_app(config, loader=loader, router=router)
    state: ServerState = app.state.infopt
    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                               access_log=config.access_log,
                               timeout_graceful_shutdown=int(config.batching.timeout_s) + 5)
    server = _DrainingServer(uv_config, state)
    failure: list[BaseException] = []

    def on_load_error(error: BaseException) -> None:
        failure.append(error)
        server.should_exit = True

    state.on_load_error = on_load_error
    server.run()
    if failure:
        raise failure[0]
