"""The stored form of a cache entry: a small versioned JSON envelope with a sha256 over all of it.

    data = Entry(key, "exact", fingerprint, scope, tags, created, expires, model_s, payload).encode()
    entry = Entry.decode(data, key)        # raises CorruptEntry: truncated, not JSON, other version, bad checksum

`decode` also checks that the entry is the one asked for (its key), so a row under a wrong key is never an
answer. The payload is kept as JSON text, so the bytes a backend stores are what the LRU bounds.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FORMAT_VERSION", "CorruptEntry", "Entry", "index_tags", "peek"]

FORMAT_VERSION = 1
"""Version of the envelope; an entry of any other version is a miss."""

_FIELDS = ("v", "key", "tier", "fp", "scope", "tags", "created", "expires", "model_s", "payload")


class CorruptEntry(ValueError):
    """Stored bytes that are not a whole, valid entry of this version (a miss, counted, never an answer)."""


def _checksum(fields: dict[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def index_tags(tier: str, fingerprint: str, scope: str, tags: tuple[str, ...]) -> tuple[str, ...]:
    """The backend index tags of an entry: `tier:<tier>`, and per tier `<tier>:model:<fp>`, `<tier>:scope:<scope>`
    and `<tier>:tag:<tag>` for each user tag (so one tier's invalidation leaves the others' entries)."""
    return (f"tier:{tier}", f"{tier}:model:{fingerprint}", f"{tier}:scope:{scope}", *(f"{tier}:tag:{t}" for t in tags))


@dataclass(frozen=True)
class Entry:
    """One cached answer: `payload` is the response as JSON text; `model_s` the model time it stands for;
    `expires` a unix time (None: never)."""

    key: str
    tier: str
    fingerprint: str
    scope: str
    tags: tuple[str, ...]
    created: float
    expires: float | None
    model_s: float
    payload: str
    _response: Any = field(default=None, init=False, compare=False, repr=False)
    """The payload as decode parsed it (each lookup decodes its own entry, so none is shared)."""

    @classmethod
    def make(cls, key: str, tier: str, fingerprint: str, scope: str, tags: tuple[str, ...], ttl_s: float | None,
             model_s: float, response: Any) -> Entry:
        """An entry created now, expiring after `ttl_s` (None: never), holding `response` as JSON."""
        now = time.time()
        payload = json.dumps(response, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return cls(key, tier, fingerprint, scope, tuple(tags), now, None if ttl_s is None else now + ttl_s,
                   float(model_s), payload)

    @property
    def index_tags(self) -> tuple[str, ...]:
        return index_tags(self.tier, self.fingerprint, self.scope, self.tags)

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (time.time() if now is None else now) >= self.expires

    def response(self) -> Any:
        """The payload decoded (parsed once, by `decode`)."""
        return json.loads(self.payload) if self._response is None else self._response

    def encode(self) -> bytes:
        fields: dict[str, Any] = {"v": FORMAT_VERSION, "key": self.key, "tier": self.tier, "fp": self.fingerprint,
                                  "scope": self.scope, "tags": list(self.tags), "created": self.created,
                                  "expires": self.expires, "model_s": self.model_s, "payload": self.payload}
        fields["sha256"] = _checksum(fields)
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def decode(cls, data: bytes, key: str | None = None) -> Entry:
        """The entry in `data`; raises CorruptEntry unless it is whole, of this version, checks out, and (when
        `key` is given) is the entry of `key`."""
        fields = _envelope(data)
        checksum = fields.pop("sha256", None)
        if set(fields) != set(_FIELDS) or checksum != _checksum(fields):
            raise CorruptEntry("checksum or fields do not match")
        if key is not None and fields["key"] != key:
            raise CorruptEntry("the entry of another key")
        try:
            expires, tags = _expiry_and_tags(fields)
            entry = cls(str(fields["key"]), str(fields["tier"]), str(fields["fp"]), str(fields["scope"]), tags,
                        float(fields["created"]), expires, float(fields["model_s"]), str(fields["payload"]))
            object.__setattr__(entry, "_response", json.loads(entry.payload))
        except (TypeError, ValueError) as e:
            raise CorruptEntry(f"bad field ({e})") from None
        return entry


def _envelope(data: bytes) -> dict[str, Any]:
    """The JSON object of stored bytes, of this format version; raises CorruptEntry."""
    try:
        fields = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptEntry(f"not JSON ({e})") from None
    if not isinstance(fields, dict):
        raise CorruptEntry("not an object")
    if fields.get("v") != FORMAT_VERSION:
        raise CorruptEntry(f"format version {fields.get('v')!r}, not {FORMAT_VERSION}")
    return fields


def _expiry_and_tags(fields: dict[str, Any]) -> tuple[float | None, tuple[str, ...]]:
    """`(expires, tags)` of an envelope's fields; raises KeyError, TypeError or ValueError when they are malformed."""
    return None if fields["expires"] is None else float(fields["expires"]), tuple(str(t) for t in fields["tags"])


def peek(data: bytes) -> tuple[float | None, tuple[str, ...]] | None:
    """`(expires, index tags)` of stored bytes, or None when they are not an entry of this version (for
    read-through; the checksum is left to `decode`, which every answer goes through)."""
    try:
        fields = _envelope(data)
        expires, tags = _expiry_and_tags(fields)
        return expires, index_tags(str(fields["tier"]), str(fields["fp"]), str(fields["scope"]), tags)
    except (CorruptEntry, KeyError, TypeError, ValueError):
        return None
