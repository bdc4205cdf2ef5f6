"""Quantized weights behind a real uvicorn server: `[engine] weights = "int8"` on a float model, and a weight-int8
variant served by the paged engine as it is (not the plain loop), greedy answers close to the float model's."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from infopt.models import LoadedModel
from infopt.serve import BatchingConfig, ModelSpec, ServeCacheConfig, ServeConfig, create_app
from infopt.serve._engine_config import ServeEngineConfig
from infopt.serve._engine_worker import EngineWorker
from infopt.serve.engine._weights import Int8Weight


def _config(**engine: Any) -> ServeConfig:
    return ServeConfig(models=(ModelSpec("lm", "lm"),), batching=BatchingConfig(),
                       cache=ServeCacheConfig(exact=False, prompt=False), engine=ServeEngineConfig(**engine))


def _chat(server: Any) -> list[str]:
    out = []
    for q in ("hello there", "what is the weather in paris"):
        r = httpx.post(server.url + "/v1/chat/completions", json={
            "model": "lm", "messages": [{"role": "user", "content": q}], "max_tokens": 6, "temperature": 0},
            timeout=30)
        assert r.status_code == 200, r.text
        out.append(r.json()["choices"][0]["message"]["content"])
    return out


@pytest.mark.parametrize("variant", [False, True])
def test_int8_weights_are_served_by_the_engine(live: Any, tiny_lm: LoadedModel, one_torch_thread: None,
                                               variant: bool) -> None:
    from infopt.compress.quantize import quantize

    model = quantize(tiny_lm, "weight-int8") if variant else tiny_lm
    server = live(create_app({"lm": model}, config=_config(weights="auto" if variant else "int8",
                                                             dtype="bfloat16")))
    assert httpx.get(server.url + "/v1/models").json()["data"][0]["engine"] == "paged"
    answers = _chat(server)
    assert all(isinstance(a, str) for a in answers) and any(answers)
    worker = server.state.models["lm"].generator
    assert isinstance(worker, EngineWorker) and worker.engine.weights == "int8"
    assert isinstance(worker.engine.runner.layers[0].qkv[0], Int8Weight)
