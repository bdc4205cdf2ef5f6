"""Rollouts against real servers (uvicorn on a free loopback port, saved tiny classifiers): shadow mode never
changes answers, a worse candidate is rolled back and a better one promoted by the sequential test, a restarted
server resumes its experiment, feedback, metrics, drift alerts and `infopt rollout status`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from infopt.data import TextDataset
from infopt.models import LoadedModel, load_model
from infopt.monitor import Registry, prepare_rollout
from infopt.serve import ModelSpec, ServeCacheConfig, ServeConfig, create_app

NO_CACHE = ServeCacheConfig(exact=False, prompt=False)


def _config(current: Path, rollout: dict[str, Any]) -> ServeConfig:
    return ServeConfig(models=(ModelSpec("clf", str(current)),), cache=NO_CACHE, rollout=rollout)


def _app(config: ServeConfig, db: Path, models: dict[str, LoadedModel] | None = None) -> Any:
    config, router = prepare_rollout(config, Registry(db))
    if models is None:
        return create_app(config, router=router)
    return create_app(models, config=config, router=router)


def _ask(url: str, text: str, user: str | None = None, client: httpx.Client | None = None) -> dict[str, Any]:
    headers = {"X-User": user} if user else {}
    r = (client or httpx).post(url + "/v1/classify", json={"model": "clf", "input": text}, headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _run(url: str, data: TextDataset, until: Callable[[dict[str, Any]], bool], limit: int = 1500,
         feedback: bool = True, mirror_wait: float = 0.0) -> tuple[int, dict[str, Any]]:
    """Send labelled requests (one user each, feedback after each answer) until `until(status)`; the count."""
    status: dict[str, Any] = {}
    with httpx.Client(timeout=30) as client:
        for i in range(limit):
            k = i % len(data.texts)
            body = _ask(url, data.texts[k], user=f"u{i}", client=client)
            if mirror_wait:
                time.sleep(mirror_wait)
            if feedback:
                r = client.post(url + "/v1/feedback", json={"id": body["id"],
                                                            "label": data.label_names[data.labels[k]]})
                assert r.status_code == 200, r.text
            if i % 5 == 4:
                status = client.get(url + "/v1/rollout").json()
                if until(status):
                    return i + 1, status
    return limit, status


def _decided(status: dict[str, Any]) -> bool:
    return status["experiment"]["status"] != "running"


def test_shadow_never_changes_answers(classifiers: dict[str, Path], reviews: TextDataset, live: Any,
                                      broken: Any, tmp_path: Path) -> None:
    good, bad = load_model(classifiers["good"]), load_model(classifiers["bad"])
    plain = live(create_app({"clf": good}, config=ServeConfig(models=(ModelSpec("x", "x"),), cache=NO_CACHE)))
    for candidate in (bad, broken(bad)):
        config = _config(classifiers["good"], {"candidate": "cand", "shadow": True})
        shadowed = live(_app(config, tmp_path / f"{id(candidate)}.sqlite",
                             {"clf": good, "clf@candidate": candidate}))
        for i, text in enumerate(reviews.texts[:30]):
            a, b = _ask(plain.url, text), _ask(shadowed.url, text, user=f"u{i}")
            assert a.pop("id") != b.pop("id")
            assert a == b
        time.sleep(0.3)
        status = httpx.get(shadowed.url + "/v1/rollout").json()
        if candidate is bad:
            assert status["arms"]["candidate"]["requests"] == 30  # every copy ran
            assert status["experiment"]["status"] == "running"
        else:  # every copy failed: rolled back (shown bad on the error rate) after a few, answers unchanged
            assert status["experiment"]["status"] == "rolled_back"
            assert 1 <= status["arms"]["candidate"]["errors"] == status["arms"]["candidate"]["requests"] < 30
        assert status["arms"]["current"]["errors"] == 0


def test_worse_candidate_is_rolled_back(classifiers: dict[str, Path], reviews: TextDataset, live: Any,
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(classifiers["good"], {"candidate": str(classifiers["bad"]), "share": 0.5,
                                           "max_quality_drop": 0.05, "min_requests": 50})
    server = live(_app(config, tmp_path / "r.sqlite"))
    n, status = _run(server.url, reviews, _decided, mirror_wait=0.01)
    assert status["experiment"]["status"] == "rolled_back", status
    quality = next(b for b in status["bounds"] if b["bound"] == "quality_drop")
    assert quality["status"] == "bad" and quality["upper"] < -0.05
    assert status["live"] == "clf"
    with capsys.disabled():
        print(f"\n  worse candidate (untrained) rolled back after {n} requests "
              f"({status['arms']['candidate']['requests']} to the candidate, quality drop {quality['estimate']:.2f})")
    # from now on every request is answered by the current model
    before = httpx.get(server.url + "/v1/rollout").json()["arms"]["candidate"]["requests"]
    for i in range(20):
        _ask(server.url, reviews.texts[i], user=f"v{i}")
    assert httpx.get(server.url + "/v1/rollout").json()["arms"]["candidate"]["requests"] == before
    decision = status["decisions"][0]
    assert decision["decision"] == "rollback" and decision["evidence"]["bounds"]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'infopt_rollout_state{model="clf",state="rolled_back"} 1.0' in metrics
    assert 'infopt_rollout_bound_status{bound="quality_drop",model="clf"} -1.0' in metrics


def test_better_candidate_is_promoted(classifiers: dict[str, Path], reviews: TextDataset, live: Any,
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(classifiers["bad"], {"candidate": str(classifiers["good"]), "shadow": True,
                                          "max_error_rate": 0.05, "max_p95_ms": 2000, "min_requests": 50})
    server = live(_app(config, tmp_path / "p.sqlite"))
    n, status = _run(server.url, reviews, _decided, mirror_wait=0.01)
    assert status["experiment"]["status"] == "promoted", status
    assert all(b["status"] == "good" for b in status["bounds"])
    assert status["live"] == "clf@candidate"
    with capsys.disabled():
        print(f"\n  better candidate (trained) promoted after {n} requests (shadow)")
    # the promoted model answers now: its answers are the trained model's
    good = load_model(classifiers["good"])
    plain = live(create_app({"clf": good}, config=ServeConfig(models=(ModelSpec("x", "x"),), cache=NO_CACHE)))
    for text in reviews.texts[:10]:
        a, b = _ask(server.url, text), _ask(plain.url, text)
        assert a["data"] == b["data"]


def test_slow_candidate_is_rolled_back(classifiers: dict[str, Path], reviews: TextDataset, live: Any,
                                       slowed: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = load_model(classifiers["good"])
    config = _config(classifiers["good"], {"candidate": "slow", "share": 1.0, "max_p95_ms": 40})
    server = live(_app(config, tmp_path / "s.sqlite", {"clf": good, "clf@candidate": slowed(good, 0.08)}))
    n, status = _run(server.url, reviews, _decided, limit=200, feedback=False)
    assert status["experiment"]["status"] == "rolled_back"
    p95 = next(b for b in status["bounds"] if b["bound"].startswith("p95"))
    assert p95["status"] == "bad"
    assert status["arms"]["candidate"]["p95_ms"] > 40
    with capsys.disabled():
        print(f"\n  candidate with 80 ms added rolled back after {n} requests (p95 bound 40 ms)")


def test_restarted_server_resumes(classifiers: dict[str, Path], reviews: TextDataset, live: Any,
                                  tmp_path: Path) -> None:
    db = tmp_path / "resume.sqlite"
    rollout = {"candidate": str(classifiers["good"]), "shadow": True, "max_error_rate": 0.02, "min_requests": 400}
    first = live(_app(_config(classifiers["bad"], rollout), db))
    _run(first.url, reviews, lambda s: False, limit=40, mirror_wait=0.01)
    time.sleep(0.2)
    before = httpx.get(first.url + "/v1/rollout").json()
    assert before["experiment"]["status"] == "running"
    first.stop()
    second = live(_app(_config(classifiers["bad"], rollout), db))
    after = httpx.get(second.url + "/v1/rollout").json()
    assert after["experiment"]["id"] == before["experiment"]["id"]
    assert after["arms"]["candidate"]["requests"] == before["arms"]["candidate"]["requests"] == 40
    assert [b["n"] for b in after["bounds"]] == [b["n"] for b in before["bounds"]]
    _, status = _run(second.url, reviews, _decided, mirror_wait=0.01)
    assert status["experiment"]["status"] == "promoted"
    assert status["arms"]["candidate"]["requests"] >= 400  # the 40 before the restart count
    third = live(_app(_config(classifiers["bad"], rollout), db))  # a promoted experiment stays promoted
    assert httpx.get(third.url + "/v1/rollout").json()["live"] == "clf@candidate"


def test_feedback_switch_drift_and_status_command(classifiers: dict[str, Path], reviews: TextDataset, live: Any,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from infopt.cli import main

    rollout = {"candidate": str(classifiers["bad"]), "share": 0.0,
               "drift": {"window": 60, "reference_size": 96, "check_every": 10,
                                                                  "psi_threshold": 1.0, "ks_threshold": 0.35}}
    server = live(_app(_config(classifiers["good"], rollout), tmp_path / "d.sqlite"))
    assert httpx.post(server.url + "/v1/feedback", json={"id": "clf-nope", "label": "positive"}).status_code == 404
    assert httpx.post(server.url + "/v1/feedback", json={"id": "x"}).status_code == 400
    for i in range(96 + 60):
        _ask(server.url, reviews.texts[i % len(reviews.texts)], user=f"u{i}")
    status = httpx.get(server.url + "/v1/rollout").json()
    assert status["drift"]["alert"] is False and status["drift"]["checks"] >= 1
    long_text = " ".join(["the film is a story of the cast and the plot"] * 8)
    for i in range(60):
        _ask(server.url, long_text + f" {i}", user=f"w{i}")
    status = httpx.get(server.url + "/v1/rollout").json()
    assert status["drift"]["alert"] is True and status["drift"]["alerts"]["length"] is True
    assert 'infopt_drift_alert{feature="length",model="clf"} 1.0' in httpx.get(server.url + "/metrics").text
    assert main(["rollout", "status", server.url]) == 0
    out = capsys.readouterr().out
    assert "experiment" in out and "drift: ALERT on length" in out and "quality_drop" in out
    # an atomic switch to the candidate's fingerprint, then back
    fp = status["candidate"]["fingerprint"]
    r = httpx.post(server.url + "/v1/rollout/switch", json={"fingerprint": fp})
    assert r.status_code == 200 and r.json()["live"] == "clf@candidate"
    assert httpx.get(server.url + "/v1/rollout").json()["experiment"]["status"] == "promoted"
    assert httpx.post(server.url + "/v1/rollout/switch", json={"fingerprint": "nope"}).status_code == 400
    back = httpx.post(server.url + "/v1/rollout/switch", json={"fingerprint": status["current"]["fingerprint"]})
    assert back.json()["live"] == "clf"
    assert Registry(tmp_path / "d.sqlite").live("clf") == status["current"]["fingerprint"]
