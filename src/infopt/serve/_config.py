"""What a server serves and how: models, address, batching and request limits; read from TOML.

    [[models]]                      # or a table:  [models]  clf = "minilm-l6-rt"
    name = "clf"
    path = "minilm-l6-rt"           # a bundled name or a model folder
    [batching]
    max_batch_size = 32
    max_wait_ms = 0.0
    packing = true                  # BERT-family torch models: texts end to end in rows, not padded
    workers = 1                     # ONNX Runtime models: batches run at once, the threads split among them
    [cache]                         # response caches (exact + prompt tiers); see ServeCacheConfig
    backend = "sqlite"              # "memory", "sqlite" or "redis"
    [cache.semantic]                # the semantic tier (opt in); see SemanticConfig
    enabled = true
    [engine]                        # the paged engine of Llama-family causal LMs; see ServeEngineConfig
    max_num_seqs = 8
    [auth]                          # API keys, limits, the admin key (off unless a key is given); see AuthConfig
    key_env = "INFOPT_API_KEY"
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infopt._config import check_bool, check_int, check_number, check_str, check_type, field_error, read_toml
from infopt.errors import UserError
from infopt.serve._auth import AuthConfig
from infopt.serve._engine_config import ServeEngineConfig
from infopt.serve._ray_config import RayConfig
from infopt.serve.cache import CacheConfig
from infopt.serve.cache._semantic_config import SemanticConfig

__all__ = ["BatchingConfig", "ModelSpec", "ServeCacheConfig", "ServeConfig", "is_loopback", "load_serve_config"]


def is_loopback(host: str) -> bool:
    """Whether `host` is `localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One served model: the `name` clients ask for and the `path` it loads from (bundled name or folder)."""

    name: str
    """The name clients put in the request's `model` field."""
    path: str
    """A bundled name or a model folder; in a config file, a relative folder next to the file is read from there."""
    threads: int | None = None
    """Intra-op threads of an ONNX Runtime / OpenVINO model's own session (not set: torch's count; an exported
    serve.toml sets 1 where one thread was faster at batch 1); torch models use the process's threads."""

    def __post_init__(self) -> None:
        if isinstance(self.path, Path):
            object.__setattr__(self, "path", str(self.path))
        check_str(self, "name")
        check_str(self, "path")
        check_int(self, "threads", min=1, optional=True)


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
    """Dynamic batching of one model: batch up to `max_batch_size` texts; wait `max_wait_ms` for more (0: a
    lone request runs at once); at most `max_queue` requests wait; each waits at most `timeout_s`."""

    max_batch_size: int = 32
    max_wait_ms: float = 0.0
    max_queue: int = 64
    timeout_s: float = 30.0
    packing: bool = True
    workers: int = 1

    def __post_init__(self) -> None:
        check_bool(self, "packing")
        check_int(self, "workers", min=1)
        check_int(self, "max_batch_size", min=1)
        check_number(self, "max_wait_ms", low=0, high=10_000, example=5)
        check_int(self, "max_queue", min=1)
        check_number(self, "timeout_s", low=0, bounds="(]", example=30)


@dataclasses.dataclass(frozen=True)
class ServeCacheConfig(CacheConfig):
    """The response caches of a server: `CacheConfig` (tiers, backend, sizes, TTLs) plus the admin endpoints.
    `exact = false` and `prompt = false` (or `--no-cache`) turn caching off."""

    admin: bool | None = None
    """Serve POST /v1/cache/purge, POST /v1/cache/invalidate and GET /v1/cache/stats. When not set they are served
    when `host` is a loopback address or [auth] is on (then only to the admin key)."""
    semantic: SemanticConfig = dataclasses.field(default_factory=SemanticConfig)
    """The semantic tier (`[cache.semantic]`, off unless `enabled`): paraphrases of a cached prompt get its answer
    (header X-Infopt-Cache: semantic), within a calibrated false-hit budget that shadow checks enforce."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.admin is not None:
            check_bool(self, "admin")
        if isinstance(self.semantic, Mapping):
            object.__setattr__(self, "semantic", SemanticConfig.from_table(self.semantic))
        check_type(self, "semantic", SemanticConfig)

    @property
    def enabled(self) -> bool:
        """Whether any tier runs."""
        return self.exact or self.prompt or self.semantic.enabled

    def admin_on(self, host: str, auth: bool = False) -> bool:
        """Whether the admin endpoints are served on `host` (`auth`: [auth] is on, so they need the admin key)."""
        return (is_loopback(host) or auth) if self.admin is None else self.admin


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """A server: its models (distinct names), its address, batching and request limits. `price_per_hour` (the
    machine's cost, any currency) turns measured inference time into a cost per 1,000 inputs in /v1/stats."""

    models: tuple[ModelSpec, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    batching: BatchingConfig = dataclasses.field(default_factory=BatchingConfig)
    max_inputs: int = 64
    max_body_bytes: int = 1_000_000
    price_per_hour: float = 0.0
    cache: ServeCacheConfig = dataclasses.field(default_factory=ServeCacheConfig)
    engine: ServeEngineConfig = dataclasses.field(default_factory=ServeEngineConfig)
    rollout: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The [rollout] table, read by `infopt.monitor` (`infopt serve` only): a candidate served beside a model under
    its name, the share or shadow copy of traffic it gets, the bounds of the sequential test, drift alerts."""
    auth: AuthConfig = dataclasses.field(default_factory=AuthConfig)
    """API keys (the auth table, off unless a key is given): every path but /health, /ready, /metrics and the OpenAPI
    schema then needs `Authorization: Bearer KEY` (401), within the key's rate and quota (429 with Retry-After);
    the admin endpoints need the admin key (403); each key's tenant scopes the caches."""
    ray: RayConfig = dataclasses.field(default_factory=RayConfig)
    """Replicas on Ray Serve (`[ray]`, `--replicas N`; off by default): the same app in N processes behind Ray's
    proxy, sharing the caches through the cache backend (use Redis)."""
    access_log: bool = False
    """Log one line per request (uvicorn's access log; also `--access-log`). Off by default: it costs about a tenth
    of the server's CPU on a cache hit, and /metrics and /v1/stats count every request by path and status."""
    log_bodies: bool = False
    """Let request texts into the logs (the body of a request that failed with 500, and error messages); off:
    logs name the method, path, status and exception type only."""

    def __post_init__(self) -> None:
        if isinstance(self.cache, CacheConfig) and not isinstance(self.cache, ServeCacheConfig):
            object.__setattr__(self, "cache", ServeCacheConfig(**{f.name: getattr(self.cache, f.name)
                                                                   for f in dataclasses.fields(CacheConfig)}))
        models: Any = self.models
        if isinstance(models, list):
            models = tuple(models)
            object.__setattr__(self, "models", models)
        if not isinstance(models, tuple) or not models or not all(isinstance(m, ModelSpec) for m in models):
            raise field_error(self, "models", models, "a non-empty list of ModelSpec")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise UserError(f"ServeConfig.models names {', '.join(map(repr, dup))} more than once.",
                            "give every model a distinct name.")
        check_str(self, "host")
        check_int(self, "port", min=0)
        if self.port > 65535:
            raise field_error(self, "port", self.port, "an integer in [0, 65535]")
        check_type(self, "batching", BatchingConfig)
        check_int(self, "max_inputs", min=1)
        check_int(self, "max_body_bytes", min=1)
        check_number(self, "price_per_hour", low=0, example=2.5)
        check_type(self, "cache", ServeCacheConfig)
        check_type(self, "engine", ServeEngineConfig)
        if not isinstance(self.rollout, Mapping):
            raise field_error(self, "rollout", self.rollout, "a [rollout] table")
        check_type(self, "auth", AuthConfig)
        check_bool(self, "access_log")
        check_bool(self, "log_bodies")

    def model(self, name: str) -> ModelSpec | None:
        """The spec named `name`, or None."""
        return next((m for m in self.models if m.name == name), None)


def _known(cls: type, table: Mapping[str, Any], where: str, path: Path) -> None:
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            raise UserError(f"{path}: unknown key {key!r} in {where}.",
                            f"use one of {', '.join(sorted(fields))} (or remove it).")


def _build(cls: type, table: Mapping[str, Any], where: str, path: Path) -> Any:
    _known(cls, table, where, path)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in table
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{path}: {where} has no {' and no '.join(map(repr, missing))}.",
                        f"add {' and '.join(f'{m} = ...' for m in missing)} to it.")
    try:
        return cls(**table)
    except UserError as e:
        raise UserError(f"{path}, {where}: {e.problem}", e.fix) from None


def _beside(spec: ModelSpec, config: Path) -> ModelSpec:
    """A relative model path that names a folder next to the config file is read from there (an exported
    serve.toml says `path = "model"`); other paths (bundled names, paths from the working directory) stay."""
    here = config.parent / spec.path
    if Path(spec.path).is_absolute() or not here.is_dir():
        return spec
    return dataclasses.replace(spec, path=str(here.resolve()))


def _model_specs(raw: object, path: Path) -> list[ModelSpec]:
    if isinstance(raw, Mapping):
        return [_beside(_build(ModelSpec, {"name": k, "path": v}, f"[models] {k}", path), path)
                for k, v in raw.items()]
    if isinstance(raw, list) and all(isinstance(t, Mapping) for t in raw):
        return [_beside(_build(ModelSpec, t, f"[[models]] #{i + 1}", path), path) for i, t in enumerate(raw)]
    raise UserError(f"{path}: key 'models' is {raw!r}, which is not allowed.",
                    'write [[models]] tables with name and path, or a [models] table of name = "path".')


def load_serve_config(path: str | Path) -> ServeConfig:
    """Read a TOML server config; raises UserError naming the file and the bad key."""
    path = Path(path)
    data = read_toml(path, "the server config", "pass an existing TOML file.")
    _known(ServeConfig, data, "the top level", path)
    if "models" not in data:
        raise UserError(f"{path} names no models.", 'add [[models]] tables with name = "..." and path = "...".')
    top = dict(data)
    top["models"] = tuple(_model_specs(data["models"], path))
    for name, cls in (("batching", BatchingConfig), ("cache", ServeCacheConfig), ("engine", ServeEngineConfig),
                      ("auth", AuthConfig), ("ray", RayConfig)):
        if name in top:
            if not isinstance(top[name], Mapping):
                raise UserError(f"{path}: key {name!r} is {top[name]!r}, which is not allowed.",
                                f"write it as a [{name}] table.")
            top[name] = _build(cls, top[name], f"[{name}]", path)
    return _build(ServeConfig, top, "the top level", path)
