"""Completions and chat completions against a real uvicorn server holding a tiny random Llama (see
conftest.lm_server): shapes, streaming, stop strings, seeds, greedy = HF generate, usage, errors, metrics."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
import torch

from infopt.models import LoadedModel


def post(server: Any, path: str, body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30)


def complete(server: Any, **body: Any) -> dict[str, Any]:
    r = post(server, "/v1/completions", {"model": "lm", "prompt": "hello world", **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def chat(server: Any, **body: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]
    r = post(server, "/v1/chat/completions", {"model": "lm", "messages": messages, **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def stream(server: Any, sse: Any, path: str, body: dict[str, Any]) -> list[Any]:
    with httpx.stream("POST", server.url + path, json={**body, "stream": True}, timeout=30) as r:
        assert r.status_code == 200, r.read()
        return list(sse(r))


def hf_greedy(loaded: LoadedModel, ids: list[int], n: int) -> list[int]:
    out = loaded.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                max_new_tokens=n, do_sample=False)
    return list(out[0, len(ids):].tolist())


def test_completion_shape_and_usage(lm_server: Any) -> None:
    body = complete(lm_server, max_tokens=8, temperature=0)
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["model"] == "lm"
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["index"] == 0 and isinstance(choice["text"], str) and choice["text"]
    assert choice["finish_reason"] == "length" and choice["logprobs"] is None
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12,  # [CLS] hello world [SEP]
                             "prompt_tokens_details": {"cached_tokens": 0}}  # on the paged engine
    assert complete(lm_server)["usage"]["completion_tokens"] == 16  # OpenAI's default max_tokens
    assert complete(lm_server, prompt=["hello world"], max_tokens=8, temperature=0)["choices"] == body["choices"]


def test_greedy_equals_hf_generate(lm_server: Any, tiny_lm: LoadedModel) -> None:
    tok = copy.deepcopy(tiny_lm.tokenizer)
    ids = tok("hello world")["input_ids"]
    expected = hf_greedy(tiny_lm, ids, 24)
    body = complete(lm_server, max_tokens=24, temperature=0)
    assert body["usage"]["completion_tokens"] == len(expected) == 24
    assert body["choices"][0]["text"] == tok.decode(expected, skip_special_tokens=True)
    chat_ids = tok.apply_chat_template([{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "hello world"}],
                                       tokenize=False, add_generation_prompt=True)
    ids = tok(chat_ids, add_special_tokens=False)["input_ids"]
    reply = chat(lm_server, max_tokens=12, temperature=0)
    assert reply["usage"]["prompt_tokens"] == len(ids)
    assert reply["choices"][0]["message"] == {"role": "assistant",
                                              "content": tok.decode(hf_greedy(tiny_lm, ids, 12),
                                                                    skip_special_tokens=True)}


def test_seed_makes_sampling_repeatable(lm_server: Any) -> None:
    texts = [complete(lm_server, max_tokens=12, temperature=1.0, top_p=0.9, seed=s)["choices"][0]["text"]
             for s in (7, 7, 8)]
    assert texts[0] == texts[1] != texts[2]
    assert texts[0] != complete(lm_server, max_tokens=12, temperature=0)["choices"][0]["text"]
    unseeded = {complete(lm_server, max_tokens=12)["choices"][0]["text"] for _ in range(2)}
    assert len(unseeded) == 2


def test_stop_strings(lm_server: Any, sse: Any) -> None:
    full = complete(lm_server, max_tokens=16, temperature=0)["choices"][0]["text"]
    words = full.split()
    stop = words[3][:3]  # part of the fourth word: the text is cut before it
    cut = full[:full.index(stop)]
    body = complete(lm_server, max_tokens=16, temperature=0, stop=["zzzzqq", stop])
    assert body["choices"][0] == {**body["choices"][0], "text": cut, "finish_reason": "stop"}
    assert body["usage"]["completion_tokens"] < 16
    events = stream(lm_server, sse, "/v1/completions", {"model": "lm", "prompt": "hello world", "max_tokens": 16,
                                                         "temperature": 0, "stop": stop})
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == cut
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert complete(lm_server, max_tokens=16, temperature=0, stop="qqqqzz")["choices"][0]["text"] == full


def test_streamed_completion(lm_server: Any, sse: Any) -> None:
    full = complete(lm_server, max_tokens=10, temperature=0)
    events = stream(lm_server, sse, "/v1/completions", {"model": "lm", "prompt": "hello world", "max_tokens": 10,
                                                         "temperature": 0, "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]"
    *chunks, finish, usage = events[:-1]
    assert usage["choices"] == [] and usage["usage"] == full["usage"]
    assert finish["choices"][0]["finish_reason"] == "length" and finish["choices"][0]["text"] == ""
    assert chunks and all(c["choices"][0]["finish_reason"] is None and c["usage"] is None for c in chunks)
    assert all(c["object"] == "text_completion" and c["id"] == usage["id"] for c in events[:-1])
    assert "".join(c["choices"][0]["text"] for c in chunks) == full["choices"][0]["text"]
    plain = stream(lm_server, sse, "/v1/completions", {"model": "lm", "prompt": "hi", "max_tokens": 3})
    assert all("usage" not in e for e in plain[:-1]) and plain[-1] == "[DONE]"


def test_chat_shape_and_stream(lm_server: Any, sse: Any) -> None:
    body = chat(lm_server, max_tokens=8, temperature=0)
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 8
    assert chat(lm_server, max_completion_tokens=3)["usage"]["completion_tokens"] == 3
    parts = chat(lm_server, max_tokens=8, temperature=0, messages=[
        {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]}])
    assert parts["choices"] == body["choices"]
    events = stream(lm_server, sse, "/v1/chat/completions", {
        "model": "lm", "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]})
    assert events[-1] == "[DONE]" and all(e["object"] == "chat.completion.chunk" for e in events[:-1])
    first, *chunks, last = events[:-1]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert last["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == choice["message"]["content"]


def error_of(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    return str(err["message"])


C, CHAT = "/v1/completions", "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    (C, {"model": "lm", "prompt": "hi", "n": 0}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "n": 17}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "logprobs": 6}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "logprobs": True}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "bogus": 1}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "temperature": "0.5"}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "temperature": 3}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "top_p": 0}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "max_tokens": 0}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "max_tokens": True}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "seed": 1.5}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "stop": [""]}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "stream": "yes"}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "stream_options": {"include": True}}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": "hi", "frequency_penalty": 0.5}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": ["a", "b"]}, 400, "invalid_request"),
    (C, {"model": "lm", "prompt": [1, 2]}, 400, "invalid_request"),
    (C, {"model": "lm"}, 400, "invalid_request"),
    (C, {"model": "nope", "prompt": "hi"}, 400, "model_not_found"),
    (C, {"model": "lm", "prompt": "word " * 120, "max_tokens": 16}, 400, "context_length_exceeded"),
    (C, {"model": "lm", "prompt": "word " * 130}, 400, "context_length_exceeded"),
    (C, {"model": "emb", "prompt": "hi"}, 422, "wrong_task"),
    (CHAT, {"model": "lm", "messages": []}, 400, "invalid_request"),
    (CHAT, {"model": "lm", "messages": [{"role": "tool", "content": "x"}]}, 400, "invalid_request"),
    (CHAT, {"model": "lm", "messages": [{"role": "user"}]}, 400, "invalid_request"),
    (CHAT, {"model": "lm", "messages": MSG, "n": 0}, 400, "invalid_request"),
    (CHAT, {"model": "lm", "messages": MSG, "logprobs": 1}, 400, "invalid_request"),
    (CHAT, {"model": "lm", "messages": MSG, "top_logprobs": 2}, 400, "invalid_request"),
    (CHAT, {"model": "lm", "messages": MSG, "max_tokens": 500}, 400, "context_length_exceeded"),
    (CHAT, {"model": "emb", "messages": MSG}, 422, "wrong_task"),
    (CHAT, {"model": "plain", "messages": MSG}, 422, "wrong_task"),
    ("/v1/classify", {"model": "lm", "input": "hi"}, 422, "wrong_task"),
    ("/v1/embeddings", {"model": "lm", "input": "hi"}, 422, "wrong_task"),
])
def test_bad_requests(lm_server: Any, path: str, body: Any, status: int, code: str) -> None:
    error_of(post(lm_server, path, body), status, code)


def test_error_messages_name_the_limit(lm_server: Any) -> None:
    message = error_of(post(lm_server, C, {"model": "lm", "prompt": "word " * 120, "max_tokens": 16}), 400,
                       "context_length_exceeded")
    assert "122 tokens" in message and "max_tokens is 16" in message and "at most 128" in message
    assert "no chat template" in error_of(post(lm_server, CHAT, {"model": "plain", "messages": MSG}), 422,
                                          "wrong_task")
    neutral = {"frequency_penalty": 0, "presence_penalty": 0.0, "logprobs": None, "top_logprobs": 0, "echo": False,
               "user": "u"}
    assert post(lm_server, C, {"model": "lm", "prompt": "hi", "max_tokens": 2, **neutral}).status_code == 200
    assert post(lm_server, C, {"model": "plain", "prompt": "hi", "max_tokens": 2}).status_code == 200


def test_lm_metrics_and_stats(lm_server: Any) -> None:
    complete(lm_server, max_tokens=5)
    post(lm_server, "/v1/embeddings", {"model": "emb", "input": "a"})
    text = httpx.get(lm_server.url + "/metrics").text
    for name in ('infopt_prompt_tokens_total{model="lm"}', 'infopt_generation_tokens_total{model="lm"}',
                 'infopt_time_to_first_token_seconds_bucket{le="0.5",model="lm"}',
                 'infopt_requests_total{endpoint="/v1/completions",model="lm",status="200"}',
                 'infopt_cost_per_1k_requests_usd{model="lm"}', 'infopt_cost_per_1k_requests_usd{model="emb"}'):
        assert name in text, name
    assert 'infopt_generation_tokens_total{model="emb"}' not in text
    stats = httpx.get(lm_server.url + "/v1/stats").json()
    lm, emb = stats["models"]["lm"], stats["models"]["emb"]
    assert lm["prompt_tokens"] >= 4 and lm["completion_tokens"] >= 5 and lm["time_to_first_token_ms"]["count"] >= 1
    assert lm["inference_ms"]["count"] >= 1 and lm["batch_size"]["max"] == 1  # engine steps of one sequence
    for m in (lm, emb):
        # price 3.6 per hour = 0.001 per second: 1,000 requests of mean d ms cost d / 1000
        assert m["cost_per_1k_requests_usd"] == pytest.approx(m["request_ms"]["mean"] / 1000, rel=0.05, abs=1e-6)
        assert m["cost_per_1k_requests_usd"] > 0
