"""`infopt serve --replicas N`: the same app (`create_app`) as N Ray Serve replicas behind Ray's HTTP proxy.

Each replica is a process with every model, its own dynamic batcher, engine and cache front; what they share
goes through the cache backend (Redis: a hit made on one replica answers on the others, and the semantic index of
each replica follows the others' entries through the backend's events). Ray routes requests among replicas and
restarts one that dies. Every response says which replica answered (`X-Infopt-Replica`).

    run_on_ray(config)        # config.ray.replicas > 0 (or an autoscaling range); blocks until SIGTERM / SIGINT
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from infopt.errors import MissingDependency, UserError
from infopt.serve._config import ServeConfig

__all__ = ["REPLICA_HEADER", "run_on_ray"]

REPLICA_HEADER = "x-infopt-replica"
"""Response header naming the replica that answered (its Ray replica id and process id)."""


def _import_ray() -> tuple[Any, Any]:
    try:
        import ray
        from ray import serve
    except ImportError:
        raise MissingDependency("Ray Serve is not installed, so --replicas cannot run.",
                                "pip install 'ray[serve]' (or serve from one process without --replicas).") from None
    return ray, serve


class _Tagged:
    """ASGI middleware adding the replica header to every HTTP response (lifespan and other scopes pass through)."""

    def __init__(self, app: Any, tag: str) -> None:
        self.app, self.tag = app, tag.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (REPLICA_HEADER.encode(), self.tag)]}
            await send(message)

        await self.app(scope, receive, tagged)


class Replica:
    """One replica: `__serve_build_asgi_app__` builds the app in the replica's own process (models load in its
    lifespan, which Ray runs before the replica takes requests)."""

    def __init__(self, config: ServeConfig, threads: int) -> None:
        self.config, self.threads = config, threads

    def __serve_build_asgi_app__(self) -> Any:
        import torch
        from ray import serve

        from infopt.serve._app import create_app

        torch.set_num_threads(self.threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(self.threads))
        try:
            tag = serve.get_replica_context().replica_id.unique_id
        except Exception:  # outside a replica (tests): the process id alone
            tag = "local"
        return _Tagged(create_app(self.config), f"{tag}:{os.getpid()}")


def _replica_env(config: ServeConfig) -> dict[str, str]:
    """What the replicas must see of this environment (also on the nodes of a remote cluster): infopt's own
    settings (cache folder, load options) and the variables that hold the API keys."""
    names = {config.auth.key_env, config.auth.admin_key_env}
    return {k: v for k, v in os.environ.items() if k.startswith("INFOPT_") or k in names}


def _wait_ready(url: str, replicas: int, timeout_s: float) -> int:
    """Poll GET /ready until `replicas` distinct replicas said ready (or the time is up); how many did."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline and len(seen) < replicas:
            try:
                r = client.get(url + "/ready")
                if r.status_code == 200 and REPLICA_HEADER in r.headers:
                    seen.add(r.headers[REPLICA_HEADER])
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    return len(seen)


def run_on_ray(config: ServeConfig, *, echo: Callable[[str], None] = print, log_level: str = "info") -> None:
    """Start (or join) Ray, deploy the replicas on config.host:port, echo when they are ready, and serve until
    SIGTERM / SIGINT; then Serve shuts down (replicas finish their requests) and a Ray started here stops."""
    from infopt.serve._launch import base_url, check_address

    ray, serve = _import_ray()
    rc = config.ray
    if not rc.enabled:
        raise UserError("The server config asks for no replicas.", "pass --replicas N (1 or more).")
    check_address(config.host, config.port)
    if rc.replicas > 1 and config.cache.enabled and config.cache.backend == "memory":
        echo("  warning: the in-memory cache backend is per replica; --redis-url shares hits among replicas")
    ray.init(address=rc.address, include_dashboard=False, logging_level=log_level.upper(),
             configure_logging=True, log_to_driver=False)
    stop = threading.Event()
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        threads = rc.threads_per_replica(os.cpu_count() or 1)
        options = rc.deployment_options()
        options["ray_actor_options"]["runtime_env"] = {"env_vars": _replica_env(config)}
        deployment = serve.deployment(name="infopt", **options)(serve.ingress()(Replica))
        serve.run(deployment.bind(config, threads), name="infopt", route_prefix="/", blocking=False)
        url = base_url(config)
        want = rc.replicas or rc.min_replicas or 1
        ready = _wait_ready(url, want, 60 + 30 * want)
        scale = (f"{rc.replicas} replicas" if rc.max_replicas is None
                 else f"{rc.min_replicas}-{rc.max_replicas} replicas (autoscaling, target "
                      f"{rc.target_ongoing_requests:g} requests in flight each)")
        echo(f"infopt serve on Ray Serve: {url}, {scale}, {threads} threads each, {rc.num_cpus:g} CPUs reserved "
             f"each; {ready} of {want} ready (GET /ready, header {REPLICA_HEADER})")
        echo(f"  ray: {'joined ' + rc.address if rc.address else 'a local cluster started by this command'}; "
             "every response says which replica answered")
        echo("  stop: Ctrl-C or SIGTERM")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        echo("infopt serve: stopping the replicas")
    finally:
        _bounded(serve.shutdown, config.batching.timeout_s + 15)
        ray.shutdown()


def _bounded(step: Callable[[], object], timeout_s: float) -> None:
    """Run `step` for at most `timeout_s` (Serve's shutdown waits forever for a controller whose raylet died, as
    when a supervisor signals every process of the group at once)."""
    worker = threading.Thread(target=step, name="serve-shutdown", daemon=True)
    worker.start()
    worker.join(timeout_s)
