"""A bounded schema-fuzzing run (schemathesis, from the server's own OpenAPI schema) against a real server holding
a classifier, an embedder and a causal LM: no generated request may get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from infopt.models import LoadedModel, load_model
from infopt.serve import ModelSpec, ServeConfig, create_app
from tests.conftest import LiveServer  # type: ignore[import-not-found]

CONFIG = ServeConfig(models=(ModelSpec("x", "x"),), max_inputs=8, max_body_bytes=20_000)
schema = schemathesis.openapi.from_dict(create_app(CONFIG).openapi())  # the schema the server publishes


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
