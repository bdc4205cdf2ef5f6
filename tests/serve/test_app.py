"""The HTTP API against a real uvicorn server holding two tiny models (see conftest.server)."""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import pytest


def post(server: Any, path: str, body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30)


def error_of(r: httpx.Response, status: int, code: str) -> str:
    """Assert an OpenAI-style error with this status and code; return its message."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"} and err["code"] == code, err
    assert "Traceback" not in r.text
    return str(err["message"])


def test_classify(server: Any) -> None:
    r = post(server, "/v1/classify", {"model": "clf", "input": ["a good film", "a bad film"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "clf" and len(body["data"]) == 2
    for i, row in enumerate(body["data"]):
        assert row["index"] == i and set(row["probabilities"]) == {"negative", "positive"}
        assert math.isclose(sum(row["probabilities"].values()), 1, rel_tol=1e-5)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 4
    one = post(server, "/v1/classify", {"model": "clf", "input": "a good film"}).json()
    assert len(one["data"]) == 1
    assert one["data"][0]["probabilities"] == pytest.approx(body["data"][0]["probabilities"], abs=1e-5)


def test_embeddings_openai_shape(server: Any) -> None:
    r = post(server, "/v1/embeddings", {"model": "emb", "input": ["hello world", "bye"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "emb"
    assert [d["index"] for d in body["data"]] == [0, 1] and all(d["object"] == "embedding" for d in body["data"])
    v = body["data"][0]["embedding"]
    assert len(v) == 32 and math.isclose(sum(x * x for x in v), 1, rel_tol=1e-4)
    assert body["usage"] == {"prompt_tokens": 4 + 3, "total_tokens": 7}  # [CLS] hello world [SEP], [CLS] bye [SEP]
    b64 = post(server, "/v1/embeddings", {"model": "emb", "input": "hi", "encoding_format": "base64"}).json()
    assert isinstance(b64["data"][0]["embedding"], str)
    assert post(server, "/v1/embeddings", {"model": "emb", "input": "hi", "dimensions": 32}).status_code == 200


def test_models(server: Any) -> None:
    body = httpx.get(server.url + "/v1/models").json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert set(by_id) == {"clf", "emb"}
    assert by_id["clf"]["task"] == "classification" and by_id["emb"]["task"] == "embedding"
    assert by_id["clf"]["labels"] == ["negative", "positive"] and by_id["emb"]["dimensions"] == 32
    for m in by_id.values():
        assert m["object"] == "model" and len(m["fingerprint"]) == 16 and m["recipe"] == [] and m["max_tokens"] == 128


def test_health_and_ready(server: Any) -> None:
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    r = httpx.get(server.url + "/ready")
    assert r.status_code == 200 and r.json()["models"] == ["clf", "emb"]


LONG = "word " * 200


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/v1/classify", {"model": "nope", "input": "x"}, 400, "model_not_found"),
    ("/v1/classify", {"model": "clf", "input": 3}, 400, "invalid_request"),
    ("/v1/classify", {"model": "clf", "input": [1, 2]}, 400, "invalid_request"),
    ("/v1/classify", {"model": "clf", "input": "x", "truncate": "yes"}, 400, "invalid_request"),
    ("/v1/classify", {"model": "clf", "input": "x", "inputs": "y"}, 400, "invalid_request"),
    ("/v1/classify", {"input": "x"}, 400, "invalid_request"),
    ("/v1/classify", {"model": "clf", "input": []}, 400, "empty_input"),
    ("/v1/classify", {"model": "clf", "input": ["ok", " "]}, 400, "empty_input"),
    ("/v1/classify", {"model": "clf", "input": ["x"] * 9}, 400, "too_many_inputs"),
    ("/v1/classify", {"model": "clf", "input": ["short", LONG]}, 400, "input_too_long"),
    ("/v1/classify", {"model": "emb", "input": "x"}, 422, "wrong_task"),
    ("/v1/embeddings", {"model": "clf", "input": "x"}, 422, "wrong_task"),
    ("/v1/embeddings", {"model": "emb", "input": [1, 2, 3]}, 400, "invalid_input"),
    ("/v1/embeddings", {"model": "emb", "input": "x", "dimensions": 8}, 422, "wrong_task"),
    ("/v1/embeddings", {"model": "emb", "input": "x", "encoding_format": "int8"}, 400, "invalid_request"),
    ("/v1/embeddings", {"model": "emb", "input": "x" * 30_000}, 413, "body_too_large"),
])
def test_bad_requests(server: Any, path: str, body: Any, status: int, code: str) -> None:
    error_of(post(server, path, body), status, code)


def test_too_long_names_the_input_and_truncate_fixes_it(server: Any) -> None:
    message = error_of(post(server, "/v1/classify", {"model": "clf", "input": ["short", LONG]}), 400,
                       "input_too_long")
    assert "Input 1 has 202 tokens" in message and "at most 128" in message and "truncate" in message
    r = post(server, "/v1/classify", {"model": "clf", "input": ["short", LONG], "truncate": True})
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == 3 + 128


def test_malformed_bodies(server: Any) -> None:
    r = httpx.post(server.url + "/v1/classify", content=b"{not json", headers={"content-type": "application/json"})
    error_of(r, 400, "invalid_json")
    big = httpx.post(server.url + "/v1/classify", content=b"x" * 30_000, headers={"content-type": "application/json"})
    error_of(big, 413, "body_too_large")

    def chunks() -> Any:
        for _ in range(30):
            yield b"x" * 1000

    chunked = httpx.post(server.url + "/v1/classify", content=chunks(), headers={"content-type": "application/json"})
    error_of(chunked, 413, "body_too_large")
    error_of(httpx.get(server.url + "/nope"), 404, "not_found")
    error_of(httpx.get(server.url + "/v1/classify"), 405, "method_not_allowed")
    assert httpx.get(server.url + "/health").status_code == 200  # still alive


def test_every_answer_says_how_long_the_server_took(server: Any) -> None:
    def took_ms(r: httpx.Response) -> float:
        name, _, dur = r.headers["server-timing"].partition(";dur=")
        assert name == "app", r.headers["server-timing"]
        return float(dur)

    start = time.perf_counter()
    answers = [post(server, "/v1/classify", {"model": "clf", "input": ["a good film"]}),
               post(server, "/v1/classify", {"model": "nope", "input": "a"}),
               httpx.post(server.url + "/v1/classify", content=b"x" * 30_000),
               httpx.get(server.url + "/health")]
    client_ms = (time.perf_counter() - start) * 1e3
    assert [r.status_code for r in answers] == [200, 400, 413, 200]
    took = [took_ms(r) for r in answers]
    assert all(t > 0 for t in took) and sum(took) < client_ms, (took, client_ms)


def test_metrics_after_requests(server: Any) -> None:
    post(server, "/v1/classify", {"model": "clf", "input": ["a", "b", "c"]})
    post(server, "/v1/embeddings", {"model": "emb", "input": "a"})
    post(server, "/v1/classify", {"model": "nope", "input": "a"})
    text = httpx.get(server.url + "/metrics").text
    assert 'infopt_requests_total{endpoint="/v1/classify",model="clf",status="200"}' in text
    assert 'infopt_requests_total{endpoint="/v1/classify",model="unknown",status="400"}' in text
    assert 'infopt_rejections_total{model="unknown",reason="model_not_found"}' in text
    for name in ("infopt_request_duration_seconds_bucket", "infopt_queue_wait_seconds_count",
                 "infopt_inference_seconds_sum", 'infopt_batch_size_bucket{le="4.0",model="clf"}',
                 'infopt_queue_depth{model="emb"} 0.0', 'infopt_inputs_total{model="clf"}', "infopt_ready 1.0"):
        assert name in text, name


def test_stats(server: Any) -> None:
    post(server, "/v1/classify", {"model": "clf", "input": "a"})
    body = httpx.get(server.url + "/v1/stats").json()
    assert body["status"] == "ready"
    clf = body["models"]["clf"]
    assert clf["inputs"] >= 1 and clf["tokens"] >= 3
    for key in ("request_ms", "queue_wait_ms", "inference_ms", "batch_size"):
        s = clf[key]
        assert s["count"] >= 1 and 0 <= s["p50"] <= s["p95"] <= s["p99"] <= s["max"], (key, s)
