"""The rollout router with fake served models: sticky shares, shadow routes, pairing, feedback, decisions and
resume; the [rollout] table and flags."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infopt.errors import UserError
from infopt.models import Manifest
from infopt.monitor import Registry, RolloutConfig, RolloutRouter, prepare_rollout
from infopt.serve import ModelSpec, ServeConfig, load_serve_config, serve_config
from infopt.serve._routing import Outcome, Route


def _router(tmp_path: Path, **config: Any) -> RolloutRouter:
    router = RolloutRouter(RolloutConfig(candidate="c", **config), "clf", "clf@candidate",
                           Registry(tmp_path / "r.sqlite"))
    router.models = {name: SimpleNamespace(loaded=SimpleNamespace(manifest=Manifest(
        name=name, task="classification", fingerprint=f"fp-{name}"))) for name in ("clf", "clf@candidate")}  # type: ignore[misc]
    return router


def _out(rid: str, model: str, labels: tuple[str, ...], mirrored: bool = False, seconds: float = 0.01,
         error: str | None = None) -> Outcome:
    return Outcome(rid, "clf", model, mirrored, seconds, error, () if error else labels,
                   () if error else (0.9,) * len(labels), (5,) * len(labels))


def test_a_sticky_share(tmp_path: Path) -> None:
    router = _router(tmp_path, share=0.3)
    routes = {f"user:{i}": router.route("clf", f"user:{i}") for i in range(2000)}
    share = sum(r.answer == "clf@candidate" for r in routes.values()) / len(routes)
    assert 0.26 < share < 0.34
    assert all(router.route("clf", k) == r for k, r in list(routes.items())[:200])  # sticky
    assert routes[next(k for k, r in routes.items() if r.answer == "clf@candidate")].mirror == "clf"
    assert router.route("other", "user:1") == Route("other")


def test_shadow_routes_and_pairing(tmp_path: Path) -> None:
    router = _router(tmp_path, shadow=True, min_requests=5, max_error_rate=0.2)
    assert router.route("clf", None) == Route("clf", mirror="clf@candidate")
    for i in range(60):
        router.observe(_out(f"r{i}", "clf", ("positive",)))
        router.observe(_out(f"r{i}", "clf@candidate", ("negative",), mirrored=True))
        assert router.feedback(f"r{i}", ["positive"])["paired"]
        if not router.running:
            break
    assert router.experiment is not None and router.experiment.status == "rolled_back"
    assert router.arms["candidate"].correct == 0 and router.arms["current"].correct == router.arms["current"].labelled
    assert router.route("clf", None) == Route("clf")  # rolled back: the current model answers, nothing mirrored
    assert router.registry.decisions("clf")[0]["decision"] == "rollback"
    assert router.feedback("unknown", ["x"]) == {"id": "unknown", "matched": False}


def test_resume_replays_the_experiment(tmp_path: Path) -> None:
    router = _router(tmp_path, shadow=True, min_requests=1000)
    router.route("clf", None)
    for i in range(30):
        router.observe(_out(f"r{i}", "clf", ("positive",)))
        router.observe(_out(f"r{i}", "clf@candidate", ("positive",), mirrored=True, error="boom" if i == 3 else None))
    again = _router(tmp_path, shadow=True, min_requests=1000)
    status = again.status()
    assert status["experiment"]["id"] == router.experiment.id  # type: ignore[union-attr]
    assert status["arms"]["candidate"]["requests"] == 30 and status["arms"]["candidate"]["errors"] == 1
    assert [c.n for c in again.test.checks()] == [c.n for c in router.test.checks()]
    assert again.test.cs["agreement"].total == router.test.cs["agreement"].total


def test_the_rollout_table_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text('[[models]]\nname = "clf"\npath = "a"\n[rollout]\ncandidate = "b"\nshare = 0.2\n'
                    '[rollout.drift]\nwindow = 100\n')
    config = load_serve_config(path)
    assert config.rollout == {"candidate": "b", "share": 0.2, "drift": {"window": 100}}
    flagged = serve_config([], path, share=0.5, shadow=True, rollout_db=str(tmp_path / "x.sqlite"))
    assert flagged.rollout["share"] == 0.5 and flagged.rollout["shadow"] is True
    full, router = prepare_rollout(flagged)
    assert router is not None and [m.name for m in full.models] == ["clf", "clf@candidate"]
    assert full.models[1] == ModelSpec("clf@candidate", "b") and router.config.drift.window == 100
    assert router.registry.path == tmp_path / "x.sqlite"
    plain = ServeConfig(models=(ModelSpec("clf", "a"),))
    assert prepare_rollout(plain) == (plain, None)
    with pytest.raises(UserError, match="Unknown key 'shares'"):
        RolloutConfig.from_table({"shares": 0.1})
    with pytest.raises(UserError, match="share"):
        RolloutConfig(share=1.5)
    with pytest.raises(UserError, match="window"):
        RolloutConfig.from_table({"drift": {"window": 1}})
    with pytest.raises(UserError, match=r"rollout\.model"):
        prepare_rollout(ServeConfig(models=(ModelSpec("clf", "a"),), rollout={"model": "x", "candidate": "b"}))
