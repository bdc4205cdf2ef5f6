"""Semantic tier: scoping, guard, store expiry, the new-entry message; the real MiniLM encoder."""

import math

import numpy as np
import pytest

from infopt.serve.cache._calibrate import Calibration
from infopt.serve.cache._semantic import NewEntry, SemanticCache
from infopt.serve.cache._shadow import ShadowVerifier

from .conftest import BagEncoder  # type: ignore[import-not-found]


class DictStore:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def put(self, key: str, value: bytes, ttl: float | None) -> None:
        self.data[key] = value


def calibration(threshold: float = 0.6) -> Calibration:
    return Calibration(threshold, math.inf, 0.01, 0.95)


def cache(**kw: object) -> tuple[SemanticCache, DictStore]:
    store = DictStore()
    return SemanticCache(BagEncoder(), None, calibration(), store, **kw), store  # type: ignore[arg-type]


def test_hit_for_paraphrase_and_guarded_near_miss() -> None:
    c, _ = cache()
    c.put("Can I add two users to my team plan?", b"yes", "t1", "fp", "k1")
    hit = c.get("can I add 2 users to my team plan", "t1", "fp")
    assert hit is not None and hit.response == b"yes" and hit.key == "k1"
    assert c.get("Can I add 3 users to my team plan?", "t1", "fp") is None
    assert c.stats["vetoed"] >= 1


def test_never_across_tenants_or_models() -> None:
    c, _ = cache()
    c.put("How do I reset my password?", b"a", "t1", "fp1", "k1")
    assert c.get("How do I reset my password?", "t2", "fp1") is None
    assert c.get("How do I reset my password?", "t1", "fp2") is None
    assert c.get("How do I reset my password?", "t1", "fp1") is not None


def test_expired_payload_is_a_miss_and_forgotten() -> None:
    c, store = cache()
    c.put("How do I reset my password?", b"a", "t", "fp", "k")
    store.data.clear()
    assert c.get("How do I reset my password?", "t", "fp") is None and len(c) == 0


def test_new_entry_message_syncs_another_process() -> None:
    sent: list[NewEntry] = []
    a, store = cache(publish=sent.append)
    a.put("Where is my order?", b"tracking", "t", "fp", "k9")
    b = SemanticCache(BagEncoder(), None, calibration(), store)
    for message in sent:
        b.on_new_entry(NewEntry.from_json(message.to_json()))
    hit = b.get("where is my order", "t", "fp")
    assert hit is not None and hit.response == b"tracking" and sent[0].encoder == "bag"


def test_shadow_threshold_and_disable() -> None:
    shadow = ShadowVerifier(0.6, share=1.0, action="disable")
    c, _ = cache(shadow=shadow)
    c.put("Where is my order?", b"x", "t", "fp", "k")
    hit = c.get("Where is my order?", "t", "fp")
    assert hit is not None and hit.verify
    for _ in range(20):
        shadow.record(False)
    assert not c.enabled and c.get("Where is my order?", "t", "fp") is None


@pytest.mark.parametrize("name", ["minilm-l3:fp32", "minilm-l6:fp32"])
def test_real_minilm_encoder(name: str) -> None:
    from infopt.serve.cache._encoder import PromptEncoder

    enc = PromptEncoder.load(name)
    v = enc.encode(["How do I enable 2FA?", "How can I turn on 2FA for my account?", "Weather in Paris"])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] and enc.name == name
    c = SemanticCache(enc, None, calibration(0.5), DictStore())
    c.put("How do I enable 2FA?", b"steps", "t", "fp", "k")
    assert c.get("How can I turn on 2FA for my account?", "t", "fp") is not None
    assert c.get("How do I disable 2FA?", "t", "fp") is None


@pytest.mark.slow
def test_onnx_int8_agrees_with_fp32() -> None:
    from infopt.serve.cache._encoder import PromptEncoder, check_agreement
    from infopt.serve.cache._pairs import load_pairs

    texts = sorted({t for p in load_pairs()[:200] for t in (p.a, p.b)})
    agree = check_agreement(PromptEncoder.load("onnx-int8"), PromptEncoder.load("fp32"), texts)
    assert agree["min"] > 0.98
