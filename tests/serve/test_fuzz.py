"""Bounded schema-fuzzing runs (schemathesis, from the server's own OpenAPI schema) against real servers holding
a classifier, an embedder and a causal LM: a plain one, and one with every optional route on (a rollout with its
feedback and switch, the cache admin routes over a SQLite cache). No generated request may get a 5xx."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from infopt.models import LoadedModel, load_model
from infopt.monitor import Registry, prepare_rollout
from infopt.serve import ModelSpec, ServeCacheConfig, ServeConfig, create_app
from tests.conftest import LiveServer  # type: ignore[import-not-found]

CONFIG = ServeConfig(models=(ModelSpec("x", "x"),), max_inputs=8, max_body_bytes=20_000)
schema = schemathesis.openapi.from_dict(create_app(CONFIG).openapi())  # the schema the server publishes
EVERY_ROUTE = {"/v1/feedback", "/v1/rollout", "/v1/rollout/switch", "/v1/cache/purge", "/v1/cache/invalidate",
               "/v1/cache/stats", "/v1/classify", "/v1/embeddings", "/v1/completions", "/v1/chat/completions",
               "/v1/models", "/v1/stats", "/health", "/ready", "/metrics"}


def _full_config(folder: Path) -> tuple[ServeConfig, Any]:
    """Every optional route on: a shadow rollout of clf (feedback, status, switch) and the cache admin routes."""
    config = ServeConfig(models=(ModelSpec("clf", "x"),), max_inputs=8, max_body_bytes=20_000,
                         cache=ServeCacheConfig(path=str(folder / "cache.sqlite")),
                         rollout={"model": "clf", "candidate": "cand", "shadow": True})
    return prepare_rollout(config, Registry(folder / "rollout.sqlite"))


def _full_schema() -> Any:
    with tempfile.TemporaryDirectory() as folder:
        config, router = _full_config(Path(folder))
        return schemathesis.openapi.from_dict(create_app(config, router=router).openapi())


full_schema = _full_schema()


@pytest.fixture(scope="module")
def url(tiny_lm: LoadedModel, model_dirs: dict[str, Path]) -> Iterator[str]:
    models = {"clf": load_model(model_dirs["clf"]), "emb": load_model(model_dirs["emb"]), "lm": tiny_lm}
    server = LiveServer(create_app(models, config=CONFIG)).start().wait_ready()
    assert schema.raw_schema["paths"].keys() == server.app.openapi()["paths"].keys()
    yield server.url
    server.stop()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: Any, url: str) -> None:
    if case.body is not None and isinstance(case.body, dict) and "max_tokens" in case.body:
        case.body["max_tokens"] = min(int(case.body["max_tokens"] or 1), 4) if isinstance(
            case.body["max_tokens"], int) else case.body["max_tokens"]  # keep generations short
    case.call_and_validate(base_url=url, checks=[not_a_server_error], timeout=30)


@pytest.fixture(scope="module")
def full_url(tiny_lm: LoadedModel, model_dirs: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    clf = load_model(model_dirs["clf"])
    models = {"clf": clf, "clf@candidate": clf, "emb": load_model(model_dirs["emb"]), "lm": tiny_lm}
    config, router = _full_config(tmp_path_factory.mktemp("fuzz-full"))
    server = LiveServer(create_app(models, config=config, router=router)).start().wait_ready()
    paths = set(server.app.openapi()["paths"])
    assert full_schema.raw_schema["paths"].keys() == paths and paths >= EVERY_ROUTE, EVERY_ROUTE - paths
    yield server.url
    server.stop()


@full_schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_to_any_route_gets_a_server_error(case: Any, full_url: str) -> None:
    if isinstance(case.body, dict) and isinstance(case.body.get("max_tokens"), int):
        case.body["max_tokens"] = min(case.body["max_tokens"], 4)  # keep generations short
    case.call_and_validate(base_url=full_url, checks=[not_a_server_error], timeout=30)
