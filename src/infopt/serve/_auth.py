"""API keys of a server (`[auth]`): who may call it, how often (a token bucket per key), how much (a quota per
window), who may use the admin endpoints, and which cache tenant each key's requests belong to.

Keys are never written down in plain text: `[[auth.keys]]` holds their sha256 (`printf %s KEY | sha256sum`);
plain keys come only from an environment variable or a keys file, read when the server starts, and are hashed
at once. A request's key is hashed and compared with every known digest in constant time
(`hmac.compare_digest`). Limits are per server process (replicas each count their own).

    [auth]
    rate_per_s = 5                   # the default of keys that set none (0: no rate limit)
    burst = 10
    admin_key_sha256 = "9f86d0..."   # the admin key (cache purge, rollout switch)
    [[auth.keys]]
    name = "alice"
    sha256 = "2bd806..."
    tenant = "acme"                  # default: the name
    quota = 10000                    # requests per quota_window_s (default a day)

    auth = Authenticator(config.auth, env=os.environ)
    verdict = auth.authorize("/v1/classify", "Bearer sk-...")   # a Principal, None (open path); raises AuthRefused
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from infopt._config import check_bool, check_int, check_number, check_str, field_error
from infopt.errors import UserError
from infopt.serve._errors import AuthRefused, Forbidden, RateLimited, Unauthorized

__all__ = ["ADMIN_PATHS", "OPEN_PATHS", "ApiKey", "AuthConfig", "Authenticator", "Principal", "QuotaWindow",
           "TokenBucket", "key_digest", "refusal_headers"]

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                        "/redoc"})
"""Paths served without a key: probes (load balancers, Kubernetes), Prometheus scrapes and the API schema. None
of them shows a request, an answer or a cached entry."""

ADMIN_PATHS = ("/v1/cache/", "/v1/rollout/switch")
"""Paths (or path prefixes, ending in /) that need an admin key."""

_HEX64 = re.compile(r"[0-9a-f]{64}")


def key_digest(key: str) -> str:
    """The sha256 hex digest of a key (what `[[auth.keys]] sha256` holds)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _check_digest(owner: object, field: str, optional: bool = False) -> None:
    value = getattr(owner, field)
    if optional and value is None:
        return
    if isinstance(value, str) and value.startswith("sha256:"):
        value = value[len("sha256:"):]
    if not isinstance(value, str) or not _HEX64.fullmatch(value.strip().lower()):
        raise field_error(owner, field, "<hidden>" if isinstance(value, str) else value,
                          "the key's sha256 as 64 hex digits (printf %s KEY | sha256sum), not the key itself")
    object.__setattr__(owner, field, value.strip().lower())


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """One key of `[[auth.keys]]`: its holder's name, its digest, its tenant, limits and admin right."""

    name: str
    """Who holds the key (shown in errors and logs; never the key)."""
    sha256: str
    """The key's sha256 as 64 hex digits (printf %s KEY | sha256sum); the key itself is never written down."""
    tenant: str = ""
    """The cache tenant of the key's requests ("": its name); keys of one tenant share cached answers, other
    tenants never see them."""
    rate_per_s: float | None = None
    """Requests per second on average (token bucket; 0: unlimited; not set: [auth] rate_per_s)."""
    burst: int | None = None
    """Requests the key may send at once after a pause (the bucket's size; not set: [auth] burst)."""
    quota: int | None = None
    """Requests per quota_window_s (0: unlimited; not set: [auth] quota)."""
    quota_window_s: float | None = None
    """Seconds of the quota's window, counted from the window's first request (not set: [auth] quota_window_s)."""
    admin: bool = False
    """The key may also call the admin endpoints (POST /v1/cache/*, GET /v1/cache/stats, POST /v1/rollout/switch)."""

    def __post_init__(self) -> None:
        check_str(self, "name")
        _check_digest(self, "sha256")
        if not isinstance(self.tenant, str):
            raise field_error(self, "tenant", self.tenant, 'a string ("": the name)')
        check_number(self, "rate_per_s", low=0, optional=True, example=5)
        check_int(self, "burst", min=1, optional=True)
        check_int(self, "quota", min=0, optional=True)
        check_number(self, "quota_window_s", low=0, bounds="(]", optional=True, example=86400)
        check_bool(self, "admin")


def _api_key(table: Mapping[str, object], index: int) -> ApiKey:
    fields = {f.name for f in dataclasses.fields(ApiKey)}
    unknown = sorted(set(table) - fields)
    if unknown:
        raise UserError(f"[[auth.keys]] #{index + 1} has the unknown key {unknown[0]!r}.",
                        f"use one of {', '.join(sorted(fields))} (or remove it).")
    missing = [f for f in ("name", "sha256") if f not in table]
    if missing:
        raise UserError(f"[[auth.keys]] #{index + 1} has no {missing[0]}.", "give every key a name and a sha256.")
    return ApiKey(**table)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    """API keys (off unless a key is given: then every path but the open ones needs one)."""

    keys: tuple[ApiKey, ...] = ()
    """The keys, by sha256 (name, sha256, tenant, rate_per_s, burst, quota, quota_window_s, admin)."""
    key_env: str | None = None
    """An environment variable holding one key in plain text (read at start; named after the variable)."""
    keys_file: str | None = None
    """A file of `NAME KEY` lines (KEY in plain text or sha256:HEX; # starts a comment), read at start."""
    admin_key_sha256: str | None = None
    """The sha256 of the admin key (named "admin"): the admin endpoints need it (or a key with admin = true)."""
    admin_key_env: str | None = None
    """An environment variable holding the admin key in plain text (read at start)."""
    rate_per_s: float = 0.0
    """Requests per second of keys that set none (token bucket; 0: no rate limit). Over it: 429 rate_limited."""
    burst: int = 10
    """Bucket size of keys that set none: requests one may send at once after a pause."""
    quota: int = 0
    """Requests per quota_window_s of keys that set none (0: no quota). Over it: 429 quota_exceeded."""
    quota_window_s: float = 86400.0
    """Seconds of a quota window of keys that set none."""

    def __post_init__(self) -> None:
        keys: object = self.keys
        if isinstance(keys, list | tuple):
            keys = tuple(_api_key(k, i) if isinstance(k, Mapping) else k for i, k in enumerate(keys))
            object.__setattr__(self, "keys", keys)
        if not isinstance(keys, tuple) or not all(isinstance(k, ApiKey) for k in keys):
            raise field_error(self, "keys", keys, "a list of [[auth.keys]] tables (name, sha256)")
        for field in ("key_env", "keys_file", "admin_key_env"):
            check_str(self, field, optional=True)
        _check_digest(self, "admin_key_sha256", optional=True)
        check_number(self, "rate_per_s", low=0, example=5)
        check_int(self, "burst", min=1)
        check_int(self, "quota", min=0)
        check_number(self, "quota_window_s", low=0, bounds="(]", example=86400)
        names = [k.name for k in keys]
        if len(set(names)) != len(names):
            raise UserError(f"[[auth.keys]] names {sorted({n for n in names if names.count(n) > 1})} more than "
                            "once.", "give every key a distinct name.")

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (else the server takes every request, as without [auth])."""
        return bool(self.keys or self.key_env or self.keys_file or self.admin_key_sha256 or self.admin_key_env)


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` kept; a request takes one. `wait_s` says how long until one."""

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate_per_s, burst
        self.tokens, self.last = float(burst), now

    def wait_s(self, now: float) -> float:
        """Seconds until a token is there (0: now), after refilling up to `now`."""
        self.tokens = min(float(self.burst), self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = max(self.last, now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


class QuotaWindow:
    """At most `limit` requests per window of `window_s` seconds, a window starting at its first request."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self.start: float | None = None
        self.used = 0

    def wait_s(self, now: float) -> float:
        """Seconds until the quota allows a request (0: now)."""
        if self.start is None or now >= self.start + self.window_s:
            self.start, self.used = now, 0
        return 0.0 if self.used < self.limit else self.start + self.window_s - now

    def take(self) -> None:
        self.used += 1


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who sent an accepted request: the key's name, its cache tenant, and whether it is an admin key."""

    name: str
    tenant: str
    admin: bool


@dataclasses.dataclass
class _Key:
    principal: Principal
    digest: str
    bucket: TokenBucket | None
    quota: QuotaWindow | None


def _env_key(var: str, env: Mapping[str, str], what: str) -> str:
    value = env.get(var, "").strip()
    if not value:
        raise UserError(f"The environment variable {var} ({what}) is not set or empty.",
                        f"export {var}=<the key> before starting the server, or remove it from [auth].")
    return value


def _file_keys(path: Path) -> list[tuple[str, str]]:
    """(name, digest) of each `NAME KEY` line of a keys file."""
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"Cannot read the keys file {path} ({e.strerror}).", "pass an existing file of NAME KEY "
                        "lines as [auth] keys_file.") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if len(parts) != 2:
            raise UserError(f"{path} line {number} is not `NAME KEY`.", "write one NAME KEY pair per line (KEY "
                            "in plain text or sha256:HEX).")
        name, key = parts
        digest = key[len("sha256:"):].lower() if key.startswith("sha256:") else key_digest(key)
        if not _HEX64.fullmatch(digest):
            raise UserError(f"{path} line {number}: the sha256 of key {name!r} is not 64 hex digits.",
                            "write sha256:<64 hex digits>, or the key itself.")
        out.append((name, digest))
    return out


class Authenticator:
    """The keys of an `AuthConfig` with their buckets and quotas; `authorize` decides each request. Plain keys
    (environment variables, the keys file) are read and hashed here; `clock` is injected for tests."""

    def __init__(self, config: AuthConfig, *, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.clock = config, clock
        env = os.environ if env is None else env
        entries: list[tuple[ApiKey | None, str, str, bool]] = [(k, k.name, k.sha256, k.admin) for k in config.keys]
        if config.key_env:
            entries.append((None, config.key_env, key_digest(_env_key(config.key_env, env, "[auth] key_env")),
                            False))
        if config.keys_file:
            entries += [(None, name, digest, False) for name, digest in _file_keys(Path(config.keys_file))]
        if config.admin_key_sha256:
            entries.append((None, "admin", config.admin_key_sha256, True))
        if config.admin_key_env:
            entries.append((None, "admin", key_digest(_env_key(config.admin_key_env, env, "[auth] admin_key_env")),
                            True))
        digests = [d for _, _, d, _ in entries]
        if len(set(digests)) != len(digests):
            raise UserError("Two API keys of [auth] are the same key.", "give every holder a key of their own.")
        now = clock()
        self.keys = [self._key(spec, name, digest, admin, now) for spec, name, digest, admin in entries]

    def _key(self, spec: ApiKey | None, name: str, digest: str, admin: bool, now: float) -> _Key:
        c = self.config
        rate = c.rate_per_s if spec is None or spec.rate_per_s is None else spec.rate_per_s
        burst = c.burst if spec is None or spec.burst is None else spec.burst
        quota = c.quota if spec is None or spec.quota is None else spec.quota
        window = c.quota_window_s if spec is None or spec.quota_window_s is None else spec.quota_window_s
        tenant = spec.tenant if spec is not None and spec.tenant else name
        return _Key(Principal(name, tenant, admin), digest, TokenBucket(rate, burst, now) if rate > 0 else None,
                    QuotaWindow(quota, window) if quota > 0 else None)

    @property
    def has_admin(self) -> bool:
        return any(k.principal.admin for k in self.keys)

    def _find(self, token: str) -> _Key | None:
        digest = key_digest(token).encode()
        found = None
        for key in self.keys:  # every digest compared, in constant time: no early exit to time
            if hmac.compare_digest(key.digest.encode(), digest):
                found = key
        return found

    def authorize(self, path: str, authorization: str) -> Principal | None:
        """The principal of a request to `path` with this `Authorization` header value, or None for an open path;
        raises `AuthRefused` (401 no or unknown key, 403 not an admin key, 429 over the rate or the quota)."""
        if path in OPEN_PATHS:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("The request has no API key.", "send the header Authorization: Bearer <your key> "
                               "(the openai client sends its api_key so).")
        key = self._find(token)
        if key is None:
            raise Unauthorized("The API key is not valid.", "send a key this server knows (ask its operator).")
        if not key.principal.admin and any(path == p or (p.endswith("/") and path.startswith(p))
                                           for p in ADMIN_PATHS):
            raise Forbidden(f"{path} needs an admin key; key {key.principal.name!r} is not one.",
                            "call it with the admin key ([auth] admin_key_sha256, or admin = true on a key).")
        self._spend(key)
        return key.principal

    def _spend(self, key: _Key) -> None:
        now = self.clock()
        name = key.principal.name
        if key.bucket is not None:
            wait = key.bucket.wait_s(now)
            if wait > 0:
                raise RateLimited(f"Key {name!r} is over its rate limit ({key.bucket.rate:g} requests/s, burst "
                                  f"{key.bucket.burst}).", max(1, math.ceil(wait)), "rate_limited")
        if key.quota is not None:
            wait = key.quota.wait_s(now)
            if wait > 0:
                raise RateLimited(f"Key {name!r} has used its quota ({key.quota.limit} requests per "
                                  f"{key.quota.window_s:g} s).", max(1, math.ceil(wait)), "quota_exceeded")
            key.quota.take()
        if key.bucket is not None:
            key.bucket.take()


def refusal_headers(error: AuthRefused) -> dict[str, str]:
    """The headers of a refusal: `Retry-After` (whole seconds) for 429, `WWW-Authenticate` for 401."""
    if isinstance(error, RateLimited):
        return {"Retry-After": str(error.retry_after_s)}
    if isinstance(error, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    return {}
