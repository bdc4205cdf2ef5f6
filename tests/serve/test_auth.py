"""API keys ([auth]): the token bucket and quota with an injected clock, the config and its TOML, and a real server:
401 / 403 / 429 with Retry-After, open probes, the openai client with an api_key, metrics, per-tenant caches."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infopt.errors import UserError
from infopt.serve import ModelSpec, ServeConfig, create_app, load_serve_config, serve_config, toml_reference
from infopt.serve._auth import ApiKey, AuthConfig, Authenticator, QuotaWindow, TokenBucket, key_digest
from infopt.serve._errors import Forbidden, RateLimited, Unauthorized
from tests.conftest import LiveServer  # type: ignore[import-not-found]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the limits, alone ---


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=3, now=0.0)
    for _ in range(3):
        assert bucket.wait_s(0.0) == 0.0
        bucket.take()
    assert bucket.wait_s(0.0) == pytest.approx(0.5)  # one token takes 1/2 s
    assert bucket.wait_s(0.25) == pytest.approx(0.25)
    assert bucket.wait_s(0.5) == 0.0
    bucket.take()
    assert bucket.wait_s(100.0) == 0.0 and bucket.tokens == 3.0  # never more than the burst


def test_quota_window_counts_from_its_first_request() -> None:
    quota = QuotaWindow(limit=2, window_s=60.0)
    for t in (10.0, 20.0):
        assert quota.wait_s(t) == 0.0
        quota.take()
    assert quota.wait_s(30.0) == pytest.approx(40.0)  # the window opened at 10 s
    assert quota.wait_s(70.0) == 0.0  # a new window
    quota.take()
    assert quota.used == 1


# --- the authenticator, with an injected clock ---


def _auth(clock: Clock, **extra: Any) -> Authenticator:
    keys = (ApiKey("alice", key_digest("sk-alice"), tenant="acme", rate_per_s=1.0, burst=2),
            ApiKey("bob", key_digest("sk-bob"), quota=3, quota_window_s=100.0),
            ApiKey("root", key_digest("sk-root"), admin=True))
    return Authenticator(AuthConfig(keys=keys, **extra), env={}, clock=clock)


def test_keys_are_checked_and_named_by_their_principal() -> None:
    auth = _auth(Clock())
    assert auth.authorize("/health", "") is None and auth.authorize("/metrics", "Bearer nope") is None
    with pytest.raises(Unauthorized, match="no API key") as e:
        auth.authorize("/v1/classify", "")
    assert e.value.http_status == 401 and e.value.code == "invalid_api_key"
    for header in ("Bearer sk-nobody", "Basic sk-alice", "Bearer "):
        with pytest.raises(Unauthorized):
            auth.authorize("/v1/classify", header)
    alice = auth.authorize("/v1/classify", "Bearer sk-alice")
    assert alice is not None and (alice.name, alice.tenant, alice.admin) == ("alice", "acme", False)
    bob = auth.authorize("/v1/embeddings", "bearer  sk-bob ")
    assert bob is not None and bob.tenant == "bob"  # the tenant defaults to the name


def test_admin_paths_need_an_admin_key() -> None:
    auth = _auth(Clock())
    for path in ("/v1/cache/purge", "/v1/cache/invalidate", "/v1/cache/stats", "/v1/rollout/switch"):
        with pytest.raises(Forbidden, match="needs an admin key") as e:
            auth.authorize(path, "Bearer sk-bob")
        assert e.value.http_status == 403 and e.value.code == "admin_key_required"
        root = auth.authorize(path, "Bearer sk-root")
        assert root is not None and root.admin
    assert auth.authorize("/v1/rollout", "Bearer sk-bob") is not None  # the rollout's state is not admin


def test_rate_limit_says_when_to_retry() -> None:
    clock = Clock()
    auth = _auth(clock)
    auth.authorize("/v1/classify", "Bearer sk-alice")
    auth.authorize("/v1/classify", "Bearer sk-alice")
    with pytest.raises(RateLimited, match="rate limit") as e:
        auth.authorize("/v1/classify", "Bearer sk-alice")
    assert (e.value.http_status, e.value.code, e.value.retry_after_s) == (429, "rate_limited", 1)
    assert auth.authorize("/v1/classify", "Bearer sk-bob") is not None  # other keys have their own bucket
    clock.now += 1.0
    assert auth.authorize("/v1/classify", "Bearer sk-alice") is not None


def test_quota_counts_accepted_requests_per_window() -> None:
    clock = Clock()
    auth = _auth(clock)
    for _ in range(3):
        auth.authorize("/v1/classify", "Bearer sk-bob")
    clock.now += 30.4
    with pytest.raises(RateLimited, match="quota") as e:
        auth.authorize("/v1/classify", "Bearer sk-bob")
    assert (e.value.code, e.value.retry_after_s) == ("quota_exceeded", 70)  # ceil(100 - 30.4)
    clock.now += 70.0
    assert auth.authorize("/v1/classify", "Bearer sk-bob") is not None


def test_refused_requests_do_not_spend_the_quota() -> None:
    clock = Clock()
    key = ApiKey("k", key_digest("sk-k"), rate_per_s=1.0, burst=1, quota=2, quota_window_s=1000.0)
    auth = Authenticator(AuthConfig(keys=(key,)), env={}, clock=clock)
    auth.authorize("/v1/classify", "Bearer sk-k")
    for _ in range(5):
        with pytest.raises(RateLimited, match="rate"):
            auth.authorize("/v1/classify", "Bearer sk-k")
    clock.now += 1.0
    auth.authorize("/v1/classify", "Bearer sk-k")
    clock.now += 1.0
    with pytest.raises(RateLimited, match="quota"):
        auth.authorize("/v1/classify", "Bearer sk-k")


def test_plain_keys_from_the_environment_and_a_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# holders\ncarol sk-carol\ndave sha256:{key_digest('sk-dave')}  # hashed\n\n")
    config = AuthConfig(key_env="MY_KEY", keys_file=str(keys), admin_key_env="MY_ADMIN", rate_per_s=5.0)
    auth = Authenticator(config, env={"MY_KEY": "sk-env", "MY_ADMIN": "sk-admin"}, clock=Clock())
    names = {token: auth.authorize("/v1/classify", f"Bearer {token}") for token in
             ("sk-env", "sk-carol", "sk-dave", "sk-admin")}
    assert {t: (p.name, p.admin) for t, p in names.items() if p} == {
        "sk-env": ("MY_KEY", False), "sk-carol": ("carol", False), "sk-dave": ("dave", False),
        "sk-admin": ("admin", True)}
    assert auth.keys[0].bucket is not None and auth.keys[0].bucket.rate == 5.0  # [auth]'s default limits
    with pytest.raises(UserError, match=r"MY_KEY .* not set"):
        Authenticator(AuthConfig(key_env="MY_KEY"), env={})
    keys.write_text("carol\n")
    with pytest.raises(UserError, match="line 1 is not `NAME KEY`"):
        Authenticator(AuthConfig(keys_file=str(keys)), env={})
    with pytest.raises(UserError, match="same key"):
        Authenticator(AuthConfig(key_env="A", admin_key_env="B"), env={"A": "sk-x", "B": "sk-x"})


def test_config_never_takes_a_plain_key_and_says_so() -> None:
    with pytest.raises(UserError, match="64 hex digits") as e:
        ApiKey("alice", "sk-this-is-the-secret")
    assert "sk-this-is-the-secret" not in str(e.value)
    assert ApiKey("a", "sha256:" + key_digest("x").upper()).sha256 == key_digest("x")
    with pytest.raises(UserError, match="distinct name"):
        AuthConfig(keys=(ApiKey("a", key_digest("x")), ApiKey("a", key_digest("y"))))
    with pytest.raises(UserError, match="burst"):
        ApiKey("a", key_digest("x"), burst=0)
    with pytest.raises(UserError, match="unknown key 'key'"):
        AuthConfig(keys=({"name": "a", "sha256": key_digest("x"), "key": "sk"},))  # type: ignore[arg-type]
    assert not AuthConfig().enabled and AuthConfig(key_env="X").enabled


def test_auth_table_in_toml_flag_and_help(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(f'[models]\nclf = "minilm-l6-rt"\n[auth]\nrate_per_s = 2\nadmin_key_sha256 = "{key_digest("r")}"\n'
                    f'[[auth.keys]]\nname = "alice"\nsha256 = "{key_digest("a")}"\ntenant = "acme"\nquota = 9\n')
    config = load_serve_config(path)
    assert config.auth.enabled and config.auth.rate_per_s == 2
    assert config.auth.keys == (ApiKey("alice", key_digest("a"), tenant="acme", quota=9),)
    path.write_text('[models]\nclf = "minilm-l6-rt"\n[auth]\nkey = "sk-plain"\n')
    with pytest.raises(UserError, match=r"unknown key 'key' in \[auth\]"):
        load_serve_config(path)
    monkeypatch.setenv("INFOPT_KEY", "sk-1")
    assert serve_config(["minilm-l6-rt"], api_key_env="INFOPT_KEY").auth.key_env == "INFOPT_KEY"
    monkeypatch.delenv("INFOPT_KEY")
    with pytest.raises(UserError, match="INFOPT_KEY"):  # before any model loads
        serve_config(["minilm-l6-rt"], api_key_env="INFOPT_KEY")
    assert not serve_config(["minilm-l6-rt"]).auth.enabled
    reference = toml_reference()
    for line in ("[auth]", "[[auth.keys]]", "admin_key_sha256 (not set)", "rate_per_s = 0.0", "log_bodies = false",
                 "sha256 (required)"):
        assert line in reference, line


# --- a real server ---

ALICE, BOB, CAROL, ROOT, SLOW, METERED = "sk-alice", "sk-bob", "sk-carol", "sk-root", "sk-slow", "sk-metered"


def _keys() -> tuple[ApiKey, ...]:
    return (ApiKey("alice", key_digest(ALICE), tenant="acme"), ApiKey("bob", key_digest(BOB), tenant="acme"),
            ApiKey("carol", key_digest(CAROL)), ApiKey("root", key_digest(ROOT), admin=True),
            ApiKey("slow", key_digest(SLOW), rate_per_s=0.01, burst=2),
            ApiKey("metered", key_digest(METERED), quota=1, quota_window_s=3600.0))


@pytest.fixture(scope="module")
def secured(model_dirs: dict[str, Path]) -> Iterator[LiveServer]:
    config = ServeConfig(models=(ModelSpec("clf", str(model_dirs["clf"])), ModelSpec("emb", str(model_dirs["emb"]))),
                         auth=AuthConfig(keys=_keys()))
    config = dataclasses.replace(config, cache=dataclasses.replace(config.cache, backend="memory"))
    s = LiveServer(create_app(config)).start().wait_ready()  # /ready needs no key
    yield s
    s.stop()


def _post(url: str, path: str, key: str | None, body: dict[str, Any], **headers: str) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(url + path, json=body, headers=headers, timeout=30)


def test_no_or_unknown_key_gets_401_in_openais_shape(secured: LiveServer) -> None:
    for key in (None, "sk-wrong"):
        r = _post(secured.url, "/v1/classify", key, {"model": "clf", "input": "hi"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        error = r.json()["error"]
        assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
        assert "Fix:" in error["message"]
    assert httpx.get(secured.url + "/v1/models").status_code == 401
    ok = _post(secured.url, "/v1/classify", ALICE, {"model": "clf", "input": "hi"})
    assert ok.status_code == 200 and ok.json()["data"][0]["label"] in ("negative", "positive")


def test_probes_metrics_and_schema_stay_open(secured: LiveServer) -> None:
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):
        assert httpx.get(secured.url + path).status_code == 200, path


def test_admin_endpoints_need_the_admin_key(secured: LiveServer) -> None:
    r = _post(secured.url, "/v1/cache/purge", CAROL, {})
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_key_required"
    assert httpx.get(secured.url + "/v1/cache/stats", headers={"Authorization": f"Bearer {CAROL}"}).status_code == 403
    assert _post(secured.url, "/v1/cache/purge", ROOT, {}).status_code == 200
    assert httpx.get(secured.url + "/v1/cache/stats", headers={"Authorization": f"Bearer {ROOT}"}).status_code == 200


def test_rate_and_quota_get_429_with_retry_after_and_count_in_metrics(secured: LiveServer) -> None:
    body = {"model": "emb", "input": "a"}
    assert [_post(secured.url, "/v1/embeddings", SLOW, body).status_code for _ in range(2)] == [200, 200]
    r = _post(secured.url, "/v1/embeddings", SLOW, body)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert r.json()["error"]["type"] == "rate_limit_error" and 1 <= int(r.headers["retry-after"]) <= 100
    assert _post(secured.url, "/v1/embeddings", METERED, body).status_code == 200
    r = _post(secured.url, "/v1/embeddings", METERED, body)
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
    assert 3590 <= int(r.headers["retry-after"]) <= 3600
    metrics = httpx.get(secured.url + "/metrics").text
    for reason in ("rate_limited", "quota_exceeded"):
        assert f'infopt_rejections_total{{model="",reason="{reason}"}} 1.0' in metrics, reason
    assert 'reason="admin_key_required"' in metrics and 'reason="invalid_api_key"' in metrics


def test_the_openai_client_works_with_its_api_key(secured: LiveServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=secured.url + "/v1", api_key=CAROL, max_retries=0)
    out = client.embeddings.create(model="emb", input=["a tender, funny film"])
    assert len(out.data[0].embedding) == 32
    wrong = openai.OpenAI(base_url=secured.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.embeddings.create(model="emb", input="x")


def test_caches_are_scoped_by_the_keys_tenant(secured: LiveServer) -> None:
    body = {"model": "clf", "input": "a secret tenant text"}
    first = _post(secured.url, "/v1/classify", ALICE, body)
    assert first.status_code == 200 and "x-infopt-cache" not in first.headers
    same_tenant = _post(secured.url, "/v1/classify", BOB, body)  # bob shares alice's tenant "acme"
    assert same_tenant.headers.get("x-infopt-cache") == "exact"
    other = _post(secured.url, "/v1/classify", CAROL, body, **{"X-Tenant": "acme"})  # the header cannot claim it
    assert "x-infopt-cache" not in other.headers
    again = _post(secured.url, "/v1/classify", CAROL, body)
    assert again.headers.get("x-infopt-cache") == "exact"


@pytest.mark.slow
def test_infopt_serve_api_key_env_end_to_end(model_dirs: dict[str, Path], serve_process: Any, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's command: a real `infopt serve` process whose key comes from an environment variable."""
    monkeypatch.setenv("INFOPT_TEST_KEY", "sk-from-the-environment")
    with serve_process([f"clf={model_dirs['clf']}", "--api-key-env", "INFOPT_TEST_KEY", "--cache-backend", "memory"],
                       tmp_path / "serve.log") as url:
        body = {"model": "clf", "input": "fine"}
        assert _post(url, "/v1/classify", None, body).status_code == 401
        assert _post(url, "/v1/classify", "sk-from-the-environment", body).status_code == 200
    log = (tmp_path / "serve.log").read_text()
    assert "auth: API keys required" in log and "sk-from-the-environment" not in log
