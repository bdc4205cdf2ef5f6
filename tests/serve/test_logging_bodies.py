"""Request and response texts stay out of the logs of a real server (access log, the internal-error path, other
loggers' exceptions) unless `log_bodies = true`; caplog captures everything the server logs at INFO and up."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch
import uvicorn

from infopt.models import LoadedModel
from infopt.serve import ModelSpec, ServeCacheConfig, ServeConfig, create_app
from infopt.serve._http import guard_logs
from tests.conftest import LiveServer  # type: ignore[import-not-found]

SECRET = "topsecretzebra"
"""A text no log line may show (lower case and one word: the tokenizer gives it back as sent)."""


class Exploding(torch.nn.Module):
    """A classifier that crashes with the request's text in its message when the text says `explode`."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.inner, self.tokenizer, self.config = loaded.model, loaded.tokenizer, loaded.model.config

    def forward(self, **inputs: torch.Tensor) -> Any:
        text = self.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True)
        if "explode" in text:
            raise RuntimeError(f"cannot classify {text!r}")
        return self.inner(**inputs)


@pytest.fixture
def logged_server(tiny_bert_classifier: LoadedModel) -> Iterator[Any]:
    """`start(log_bodies)`: a real server of the exploding classifier whose uvicorn logs (access log included)
    reach caplog."""
    servers: list[LiveServer] = []
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    before = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate) for n in names}

    def start(log_bodies: bool) -> LiveServer:
        loaded = LoadedModel(Exploding(tiny_bert_classifier), tiny_bert_classifier.tokenizer,
                             tiny_bert_classifier.manifest)
        config = ServeConfig(models=(ModelSpec("x", "x"),), log_bodies=log_bodies,
                             cache=ServeCacheConfig(backend="memory"))
        s = LiveServer(create_app({"clf": loaded}, config=config))
        s.server = uvicorn.Server(uvicorn.Config(s.app, log_config=None, log_level="info", access_log=True))
        for name in ("uvicorn", "uvicorn.access"):  # LiveServer's own uvicorn config had stopped them at "uvicorn"
            logging.getLogger(name).propagate = True
        servers.append(s.start())
        return s

    yield start
    for s in servers:
        s.stop()
    guard_logs(False)  # process-wide: later tests log as a default server does
    for name, (level, propagate) in before.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).propagate = propagate


def _send_all(url: str) -> httpx.Response:
    ok = httpx.post(url + "/v1/classify", json={"model": "clf", "input": f"a {SECRET} film"}, timeout=30)
    assert ok.status_code == 200
    bad = httpx.post(url + "/v1/classify", json={"model": "clf", "input": [f"{SECRET}"] * 2, "truncate": "no"},
                     timeout=30)
    assert bad.status_code == 400
    crash = httpx.post(url + "/v1/classify", json={"model": "clf", "input": f"explode {SECRET}"}, timeout=30)
    assert crash.status_code == 500 and SECRET not in crash.text
    assert crash.json()["error"] == {"message": "Internal server error.", "type": "server_error", "param": None,
                                     "code": "internal_error"}
    return crash


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join([caplog.text, *(r.getMessage() + str(r.exc_text or "") + str(r.exc_info or "")
                                     for r in caplog.records)])


def test_no_body_text_in_any_log_by_default(logged_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    s = logged_server(False)
    _send_all(s.url)
    logged = _logged(caplog)
    assert SECRET not in logged
    assert "internal error on POST /v1/classify" in logged and "RuntimeError: <message withheld" in logged
    assert 'raise RuntimeError(f"cannot classify {text!r}")' in logged  # the frames stay: where it failed
    access = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any("/v1/classify" in line and "500" in line for line in access), access  # the access log was captured


def test_other_loggers_exceptions_are_withheld_too(logged_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    logged_server(False)
    caplog.set_level(logging.INFO)
    log = logging.getLogger("infopt.serve._batcher")
    try:
        raise ValueError(f"bad input {SECRET}")
    except ValueError:
        log.exception("batcher of model %r failed", "clf")
    assert SECRET not in _logged(caplog) and "ValueError: <message withheld" in caplog.text


def test_log_bodies_lets_them_in(logged_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    s = logged_server(True)
    _send_all(s.url)
    crash = [r for r in caplog.records if r.getMessage().startswith("internal error on POST /v1/classify")]
    assert crash and SECRET in crash[0].getMessage()  # the request body
    assert SECRET in caplog.text and "cannot classify" in caplog.text  # and the exception's own message
