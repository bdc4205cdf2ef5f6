"""`infopt serve` end to end: check the address is free, load every model (so a bad one fails before the port
opens), print what is served and how, then serve until SIGTERM / SIGINT.

    launch(serve_config(["minilm-l6-rt"]))
"""

from __future__ import annotations

import gc
import socket
from collections.abc import Callable
from pathlib import Path

from infopt.errors import UserError
from infopt.models import LoadedModel, load_model
from infopt.serve._config import ServeConfig, is_loopback
from infopt.serve._routing import Router
from infopt.serve._served import batch_workers
from infopt.serve._server import run_server

__all__ = ["banner", "base_url", "check_address", "freeze_startup", "launch"]

_ENDPOINTS = {"classification": "POST /v1/classify", "embedding": "POST /v1/embeddings",
              "causal-lm": "POST /v1/completions, /v1/chat/completions"}


_is_loopback = is_loopback


def base_url(config: ServeConfig) -> str:
    """http://host:port of the server (IPv6 hosts in brackets)."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"http://{host}:{config.port}"


def check_address(host: str, port: int) -> None:
    """UserError unless this process could listen on host:port now (port 0 is always free)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"--host {host!r} is not an address of this machine ({e.strerror}).",
                        "pass --host 127.0.0.1 (this machine only) or an address of one of its interfaces.") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: only a listener blocks it
        try:
            s.bind(address)
        except OSError as e:
            raise UserError(f"Cannot listen on {host} port {port} ({e.strerror}).",
                            "pass a free --port, or stop the program that uses it.") from None


def _cache_line(config: ServeConfig) -> str:
    c = config.cache
    if not c.enabled:
        return "  cache: off"
    tiers = " + ".join(t for t, on in (("exact", c.exact), ("prompt", c.prompt), ("semantic", c.semantic.enabled))
                       if on)
    where = {"memory": f"in memory ({c.max_bytes:,} bytes)", "sqlite": f"SQLite {c.sqlite_path}",
             "redis": f"Redis {c.redis_url} namespace {c.namespace}" + (" (local front)" if c.local_front else "")}
    auth = config.auth.enabled
    admin = (f"/v1/cache/purge, /invalidate, /stats served ({'admin key only' if auth else 'no authentication'})"
             if c.admin_on(config.host, auth) else "admin endpoints off (cache.admin = true serves them)")
    line = f"  cache: {tiers} on {where[c.backend]}; {admin}"
    if c.semantic.enabled:
        s = c.semantic
        line += (f"\n  semantic cache: {', '.join(s.endpoints)} ({s.encoder} encoder, false-hit budget "
                 f"{s.max_false_hit_rate:g}, calibration {s.calibration_path}); {s.shadow_share:g} of hits "
                 f"shadow-checked ({s.shadow_action} when over budget)")
    return line


def banner(config: ServeConfig, loaded: list[LoadedModel]) -> list[str]:
    """What `infopt serve` prints before it serves: the URL, the models, the settings, where the metrics are."""
    url = base_url(config)
    b = config.batching
    lines = [f"infopt serve: {url}" + (" (port 0: uvicorn picks a free port and logs it)" if not config.port else "")]
    if config.auth.enabled:
        lines.append("  auth: API keys required (Authorization: Bearer KEY) except on /health, /ready, /metrics")
    elif not _is_loopback(config.host):
        lines.append(f"  warning: {config.host} is not loopback; anyone who can reach this machine can call the "
                     "server (it has no authentication)")
    for spec, m in zip(config.models, loaded, strict=True):
        lines.append(f"  model {spec.name}: {m.task}, fingerprint {m.manifest.fingerprint or '-'}, from {spec.path} "
                     f"({m.manifest.method}, format {m.manifest.format}) -> {_ENDPOINTS.get(m.task, '?')}"
                     + (f"; {n} batches at once" if (n := batch_workers(m, b)) > 1 else ""))
    lines += [
        f"  batching: up to {b.max_batch_size} texts per model call, waiting up to {b.max_wait_ms:g} ms for more; "
        f"at most {b.max_queue} requests queued per model, each for up to {b.timeout_s:g} s (then 503)",
        f"  limits: {config.max_inputs} texts per request, bodies up to {config.max_body_bytes:,} bytes",
        (f"  price: {config.price_per_hour:g} per hour -> cost per 1,000 inputs in {url}/v1/stats"
         if config.price_per_hour else "  price: not set (--price-per-hour adds cost per 1,000 inputs to /v1/stats)"),
        _cache_line(config),
        f"  metrics: {url}/metrics (Prometheus)",
        f"  also: {url}/v1/stats (rolling stats), /ready, /health, /v1/models",
        "  stop: Ctrl-C or SIGTERM (requests in flight finish first)",
    ]
    return lines


def freeze_startup() -> int:
    """Collect, then take every object alive now (libraries, models, encoder) out of the garbage collector's full
    sweeps, which then traverse only what serving made. With the int8 teacher loaded, one full sweep of a server
    process took 250 ms (478k objects), a stall of every request in flight; after this, under 1 ms. Returns the
    objects frozen. For a process that serves (or a benchmark's client, before it measures): nothing frozen
    is ever collected as a cycle."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def launch(config: ServeConfig, *, echo: Callable[[str], None] = print, log_level: str = "info",
           loader: Callable[[str | Path], LoadedModel] = load_model, router: Router | None = None) -> None:
    """Load the models, echo the banner, serve until SIGTERM / SIGINT; raises InfoptError before serving.
    `router` (infopt.monitor's rollout) picks the model that answers each classify request."""
    check_address(config.host, config.port)
    semantic = config.cache.semantic
    if semantic.enabled:  # a bad calibration fails before serving; the encoder loads once, the server reuses it
        from infopt.serve.cache._semantic_tier import load_encoder

        semantic.load_calibration()
        load_encoder(semantic.encoder)
    loaded = [loader(spec.path) for spec in config.models]
    for line in banner(config, loaded):
        echo(line)
    lines = getattr(router, "banner", None)
    for line in lines() if callable(lines) else []:
        echo(line)
    waiting: dict[str, list[LoadedModel]] = {}  # by path: two names for one path get a model each
    for spec, m in zip(config.models, loaded, strict=True):
        waiting.setdefault(str(spec.path), []).append(m)

    def preloaded(path: str | Path) -> LoadedModel:
        return waiting[str(path)].pop(0)

    freeze_startup()
    run_server(config, loader=preloaded, log_level=log_level, router=router)
