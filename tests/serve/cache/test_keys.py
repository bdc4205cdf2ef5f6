"""Cache keys: normalisation, which fields count, tenants, fingerprints, determinism, canonical prompts."""

from __future__ import annotations

from infopt.serve.cache import (
    EXACT_FIELDS,
    SHARED_SCOPE,
    deterministic,
    exact_key,
    normalise_text,
    prompt_form,
    prompt_key,
    scope_of,
)

FP = "fp-1"
T1 = scope_of("t1", False)


def _clf(**body: object) -> dict[str, object]:
    return {"model": "clf", "input": ["hello world"], "truncate": False, **body}


def test_normalise_text() -> None:
    assert normalise_text("  a \n\t b  ") == "a b"


def test_whitespace_and_order_do_not_change_the_key() -> None:
    a = exact_key(FP, "/v1/classify", _clf(input=["  hello \n world "]), scope=T1)
    b = exact_key(FP, "/v1/classify", {"truncate": False, "input": ["hello world"], "model": "clf"}, scope=T1)
    assert a == b and a is not None and len(a) == 64


def test_fields_that_change_the_answer_count() -> None:
    base = exact_key(FP, "/v1/classify", _clf(), scope=T1)
    assert exact_key(FP, "/v1/classify", _clf(truncate=True), scope=T1) != base
    assert exact_key(FP, "/v1/classify", _clf(input=["hello"]), scope=T1) != base
    assert exact_key(FP, "/v1/classify", _clf(model="other"), scope=T1) != base
    assert exact_key(FP, "/v1/embeddings", _clf(), scope=T1) != base


def test_fields_that_do_not_change_the_answer_are_ignored() -> None:
    body = {"model": "lm", "prompt": "hi", "temperature": 0, "max_tokens": 5}
    base = exact_key(FP, "/v1/completions", body, scope=T1)
    noisy = {**body, "stream": True, "stream_options": {"include_usage": True}, "user": "u", "request_id": "x"}
    assert exact_key(FP, "/v1/completions", noisy, scope=T1) == base
    assert exact_key(FP, "/v1/embeddings", {"model": "e", "input": "x", "user": "u"}, scope=T1) == exact_key(
        FP, "/v1/embeddings", {"model": "e", "input": "x"}, scope=T1)
    assert "stream" not in EXACT_FIELDS["/v1/chat/completions"]


def test_none_is_absent_and_unknown_endpoints_are_not_cached() -> None:
    assert exact_key(FP, "/v1/classify", _clf(extra=None), scope=T1) == exact_key(FP, "/v1/classify", _clf(), scope=T1)
    assert exact_key(FP, "/v1/models", {}, scope=T1) is None
    assert prompt_key(FP, "/v1/classify", _clf(), scope=T1) is None


def test_tenants_and_fingerprints_differ() -> None:
    base = exact_key(FP, "/v1/classify", _clf(), scope=T1)
    assert exact_key(FP, "/v1/classify", _clf(), scope=scope_of("t2", False)) != base
    assert exact_key(FP, "/v1/classify", _clf(), scope=SHARED_SCOPE) != base
    assert exact_key("fp-2", "/v1/classify", _clf(), scope=T1) != base
    assert scope_of(None, False) == scope_of("", False) != SHARED_SCOPE
    assert scope_of("t1", True) == SHARED_SCOPE


def test_deterministic() -> None:
    assert deterministic({"temperature": 0})
    assert deterministic({"temperature": 0.7, "seed": 3})
    assert not deterministic({"temperature": 0.7})
    assert not deterministic({})  # the server's default temperature is 1


def test_prompt_form_makes_equivalent_requests_equal() -> None:
    a = {"model": "lm", "messages": [{"role": "developer", "content": "Be  brief."},
                                     {"role": "user", "content": [{"type": "text", "text": "hi "},
                                                                  {"type": "text", "text": "there"}]}],
         "max_completion_tokens": 8, "temperature": 0, "stop": "\n", "stream": True}
    b = {"model": "lm", "messages": [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "hi there"}],
         "max_tokens": 8, "temperature": 0.0, "stop": ["\n"], "top_p": 1.0, "n": 1}
    assert prompt_form("/v1/chat/completions", a) == prompt_form("/v1/chat/completions", b)
    assert prompt_key(FP, "/v1/chat/completions", a, scope=T1) == prompt_key(FP, "/v1/chat/completions", b, scope=T1)
    assert exact_key(FP, "/v1/chat/completions", a, scope=T1) != exact_key(FP, "/v1/chat/completions", b, scope=T1)
    c = {**b, "messages": [*b["messages"][:1], {"role": "assistant", "content": "hi there"}]}
    assert prompt_key(FP, "/v1/chat/completions", c, scope=T1) != prompt_key(FP, "/v1/chat/completions", b, scope=T1)


def test_prompt_form_of_completions() -> None:
    one = prompt_form("/v1/completions", {"model": "lm", "prompt": ["Once  upon"], "temperature": 0})
    assert one == prompt_form("/v1/completions", {"model": "lm", "prompt": "Once upon", "temperature": 0.0})
    assert one is not None and one["prompt"] == "Once upon"
    hot = prompt_key(FP, "/v1/completions", {"model": "lm", "prompt": "x", "temperature": 0.5, "seed": 1}, scope=T1)
    assert hot != prompt_key(FP, "/v1/completions", {"model": "lm", "prompt": "x", "temperature": 0.5, "seed": 2},
                             scope=T1)
