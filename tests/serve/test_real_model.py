"""The bundled default classifier behind a real server (slow: loads minilm-l6-rt)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from infopt.serve import ModelSpec, ServeConfig, create_app


@pytest.mark.slow
def test_minilm_classifier(live: Any) -> None:
    server = live(create_app(ServeConfig(models=(ModelSpec("rt", "minilm-l6-rt"),)))).wait_ready(300)
    r = httpx.post(server.url + "/v1/classify", json={"model": "rt", "input": ["a wonderful, moving film",
                                                                           "a dull, awful mess"]}, timeout=60)
    assert r.status_code == 200, r.text
    info = httpx.get(server.url + "/v1/models").json()["data"][0]
    labels = [row["label"] for row in r.json()["data"]]
    assert set(labels) <= set(info["labels"]) and info["fingerprint"]
    assert info["packing"]  # a BERT classifier's batches are packed
