"""The door: a classify / embeddings request to a model whose queue is full is refused before routing."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from infopt.models import LoadedModel
from infopt.serve import BatchingConfig, ModelSpec, ServeConfig, create_app
from infopt.serve._app import _shed


def test_shed_refuses_only_a_full_queue_of_a_named_model(tiny_bert_classifier: LoadedModel) -> None:
    app = create_app({"clf": tiny_bert_classifier},
                     config=ServeConfig(models=(ModelSpec("x", "x"),), batching=BatchingConfig(max_queue=2)))
    with TestClient(app):  # runs the lifespan: the models start
        _check(app.state.infopt)


def _check(state: Any) -> None:
    body = json.dumps({"model": "clf", "input": "a tender, funny film"}).encode()
    assert state.status == "ready"
    door = _shed(state, "/v1/classify", body)  # room in the queue: admitted, counted until it leaves
    batcher = state.models["clf"].batcher
    assert door is not None and door.model == "clf" and door.refused is None and batcher._inside == 1
    door.leave()
    assert batcher._inside == 0
    pending = batcher._pending
    pending.extend([object(), object()])  # two queued requests: full
    refused = _shed(state, "/v1/classify", body)
    assert refused is not None and refused.model == "clf" and refused.refused is not None
    assert refused.refused.http_status == 429 and refused.refused.retry_after_s >= 1 and batcher._inside == 0
    embeddings = _shed(state, "/v1/embeddings", body)
    assert embeddings is not None and embeddings.refused is not None
    assert _shed(state, "/v1/chat/completions", body) is None  # not a batched endpoint
    assert _shed(state, "/v1/classify", b'{"model": "other", "input": "x"}') is None  # unknown: the route says 400
    assert _shed(state, "/v1/classify", b'{"input": "x"}') is None  # no model field: the route validates it
    pending.clear()
