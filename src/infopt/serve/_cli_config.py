"""What `infopt serve` needs beyond the library: a ServeConfig from model arguments, a TOML file and flags, and
the reference of every TOML key (generated from the config dataclasses) for `infopt serve --help`.

    config = serve_config(["minilm-l6-rt", "emb=./my-embedder"], None, port=8080, max_batch_size=16)
    config = serve_config(["clf=./clf"], None, cache_backend="redis", redis_url="redis://10.0.0.5:6379/0")
    config = serve_config(["clf=./clf"], None, no_cache=True)
    config = serve_config(["lm=./my-lm"], None, semantic_cache=True)
    config = serve_config(["clf=./clf"], None, api_key_env="INFOPT_API_KEY")    # [auth] key_env
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from infopt.errors import UserError
from infopt.serve._auth import Authenticator
from infopt.serve._config import BatchingConfig, ModelSpec, ServeCacheConfig, ServeConfig, load_serve_config

__all__ = ["FLAG_FIELDS", "ROLLOUT_FLAGS", "model_spec", "serve_config", "toml_reference"]

FLAG_FIELDS: dict[str, tuple[str | None, str]] = {
    "host": (None, "host"), "port": (None, "port"), "price_per_hour": (None, "price_per_hour"),
    "max_batch_size": ("batching", "max_batch_size"), "max_wait_ms": ("batching", "max_wait_ms"),
    "max_queue": ("batching", "max_queue"), "timeout_s": ("batching", "timeout_s"),
    "packing": ("batching", "packing"), "batch_workers": ("batching", "workers"),
    "cache_backend": ("cache", "backend"), "redis_url": ("cache", "redis_url"), "api_key_env": ("auth", "key_env"),
    "replicas": ("ray", "replicas"), "ray_address": ("ray", "address"), "access_log": (None, "access_log"),
}
"""Command-line overrides by keyword: (the nested config field or None for the top level, the field). Besides
these, `no_cache=True` turns every cache tier off, `semantic_cache=True` turns the semantic tier on; `redis_url`
alone also selects the "redis" backend."""

ROLLOUT_FLAGS = {"candidate": "candidate", "share": "share", "shadow": "shadow", "rollout_db": "database"}
"""Command-line overrides of keys of the [rollout] table (read by infopt.monitor), by keyword."""

_DOCS: dict[type, dict[str, str]] = {
    ServeConfig: {
        "models": "the served models; give each a distinct name",
        "host": "address to listen on; keep the loopback default unless a proxy in front guards it",
        "port": "TCP port (0: any free port)",
        "batching": "dynamic batching and queue limits, the same for every model",
        "max_inputs": "most texts in one request",
        "max_body_bytes": "largest request body in bytes",
        "price_per_hour": "the machine's cost per hour (any currency); /v1/stats turns it into a cost per "
                          "1,000 inputs (0: not shown)",
        "cache": "response caches in front of every model (exact, then prompt, then the opt-in semantic tier): a "
                 "hit answers with header X-Infopt-Cache and never reaches the model; tenants (with [auth] the key's "
                 "tenant, else X-Tenant, else the bearer key, else `user`) never see each other's entries",
        "engine": "the paged generation engine of Llama-family causal LMs (continuous batching across requests, "
                  "paged KV cache, prefix caching; GET /v1/models says \"engine\": \"paged\"); other causal LMs "
                  "run one generation at a time (\"hf\")",
    },
    ModelSpec: {"name": "the name clients ask for (the `model` field of a request)",
                "path": "a bundled model name (infopt models) or a model folder"},
    BatchingConfig: {
        "max_batch_size": "most texts in one model call",
        "max_wait_ms": "how long a batch waits for more requests (0: a lone request runs at once)",
        "max_queue": "most requests waiting per model; more get 429 (Retry-After)",
        "timeout_s": "most seconds a request waits for its batch (also the drain timeout on SIGTERM)",
        "packing": "lay a batch's texts end to end in rows (own positions, block-diagonal attention) instead of "
                   "padding them, for BERT-family torch classifiers and embedders whose packed outputs match the "
                   "padded ones at load (GET /v1/models says \"packing\"); the batch then takes the oldest "
                   "texts, not texts of similar length",
        "workers": "batches of an ONNX Runtime model that run at once, each on its own thread with the model's "
                   "threads split among them (2 on a 2-core CPU: no batch's threads wait on a core the event loop "
                   "holds; measure with benchmarks/serve_batching.py); other models run one batch at a time",
    },
}
"""Descriptions of the fields that have no docstring of their own (a field's docstring wins)."""


@cache
def _field_docstrings(cls: type) -> dict[str, str]:
    """The docstrings written under a dataclass's fields (`x: int = 1` then `\"\"\"What x is.\"\"\"`)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, after in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _doc(cls: type, name: str) -> str:
    for owner in cls.__mro__:  # a subclass's dataclass (ServeCacheConfig) documents its parent's fields too
        doc = _field_docstrings(owner).get(name) or _DOCS.get(owner, {}).get(name, "")
        if doc:
            return doc
    return ""


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _default(f: dataclasses.Field[Any]) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _nested(hint: object) -> tuple[type | None, bool]:
    """(the dataclass a field holds, whether it holds a sequence of them)."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint, False
    args = [a for a in typing.get_args(hint) if a is not Ellipsis]
    if typing.get_origin(hint) in (tuple, list) and len(args) == 1 and dataclasses.is_dataclass(args[0]):
        return typing.cast(type, args[0]), True
    return None, False


def _entry(key: str, doc: str, indent: str, width: int) -> list[str]:
    head = f"{indent}{key:<{width}} "
    return textwrap.wrap(doc, 110, initial_indent=head, subsequent_indent=" " * len(head)) or [head.rstrip()]


def _lines(cls: type, indent: str, width: int, prefix: str = "") -> list[str]:
    """`key = default   description` for each plain field of `cls`, then one section per nested dataclass (named
    from the top: `[cache.semantic]`)."""
    hints = typing.get_type_hints(cls)
    plain, sections = [], []
    for f in dataclasses.fields(cls):
        inner, many = _nested(hints[f.name])
        if inner is not None:
            sections.append((f.name, inner, many))
            continue
        default = _default(f)
        key = (f"{f.name} (required)" if default is dataclasses.MISSING else f"{f.name} (not set)" if default is None
               else f"{f.name} = {_toml(default)}")
        plain.extend(_entry(key, _doc(cls, f.name), indent, width))
    for name, inner, many in sections:
        table = prefix + name
        plain.extend(_entry(f"[[{table}]]" if many else f"[{table}]", _doc(cls, name), indent, width))
        plain.extend(_lines(inner, indent + "  ", width - 2, table + "."))
    return plain


def toml_reference() -> str:
    """Every key of a `--config` TOML file, its default and what it does (for `infopt serve --help`)."""
    return "\n".join([
        "TOML keys of --config FILE (command-line flags override them; MODEL arguments replace its models):",
        *_lines(ServeConfig, "  ", 26),
        "  (models may also be one table of name = \"path\" lines:  [models]  clf = \"minilm-l6-rt\")",
    ])


def model_spec(text: str) -> ModelSpec:
    """`NAME=PATH`, or a bundled name / folder served under its own name (the folder's last part)."""
    name, sep, path = text.partition("=")
    if sep and name.strip() and "/" not in name and "\\" not in name:
        return ModelSpec(name.strip(), path.strip())
    stripped = text.strip().rstrip("/\\")
    served = Path(stripped).name if stripped else ""
    if not served or served in (".", ".."):
        raise UserError(f"The model argument {text!r} names no model.",
                        "pass a bundled name (infopt models), a model folder, or NAME=PATH.")
    return ModelSpec(served, text.strip())


def _override(config: ServeConfig, flags: Mapping[str, object]) -> ServeConfig:
    """`config` with each flag's field replaced, one at a time, so that a bad value is named by its flag."""
    for key, value in flags.items():
        if value is None:
            continue
        if key not in FLAG_FIELDS:
            raise TypeError(f"unknown serve flag {key!r}")
        owner, field = FLAG_FIELDS[key]
        change: dict[str, Any] = {field: value}
        try:
            if owner is not None:
                change = {owner: dataclasses.replace(getattr(config, owner), **change)}
            config = dataclasses.replace(config, **change)
        except UserError as e:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} {value} is not allowed.", e.fix.replace(f"{field}= ", f"{flag} ")) from None
    return config


def serve_config(models: Sequence[str], path: str | Path | None = None, **flags: object) -> ServeConfig:
    """The config of `infopt serve`: the TOML file at `path` (if any), with `models` (if any) replacing its
    models and the `flags` that are not None (see FLAG_FIELDS) replacing its values."""
    specs = tuple(model_spec(m) for m in models)
    flags = dict(flags)
    no_cache = bool(flags.pop("no_cache", False))
    semantic = bool(flags.pop("semantic_cache", False))
    rollout = {ROLLOUT_FLAGS[k]: v for k in ROLLOUT_FLAGS if (v := flags.pop(k, None)) is not None}
    if no_cache and semantic:
        raise UserError("--no-cache and --semantic-cache contradict each other.", "pass one of them.")
    if path is None and not specs:
        raise UserError("infopt serve was given no model.",
                        "pass one (e.g. infopt serve minilm-l6-rt) or --config serve.toml.")
    base = load_serve_config(path) if path is not None else ServeConfig(models=specs)
    if specs:
        base = dataclasses.replace(base, models=specs)
    if flags.get("redis_url") is not None and flags.get("cache_backend") is None:
        flags["cache_backend"] = "redis"
    config = _override(base, flags)
    if no_cache or semantic:
        cache = config.cache
        tier = dataclasses.replace(cache.semantic, enabled=semantic)
        change: dict[str, Any] = {"exact": False, "prompt": False} if no_cache else {}
        config = dataclasses.replace(config, cache=dataclasses.replace(cache, semantic=tier, **change))
    if rollout:
        config = dataclasses.replace(config, rollout={**config.rollout, **rollout})
    assert isinstance(config.cache, ServeCacheConfig)
    if config.auth.enabled:  # a key variable that is not set, a bad keys file: fail before any model loads
        Authenticator(config.auth)
    return config
