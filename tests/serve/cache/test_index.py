"""FAISS HNSW index: add, search, remove, replace, growth, compaction."""

import numpy as np

from infopt.serve.cache._index import VectorIndex, pack_vector, unpack_vector


def unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_add_search_remove_and_growth() -> None:
    rng = np.random.default_rng(0)
    vecs = unit(rng, 300)
    index = VectorIndex(16, capacity=8)
    index.add_many([f"k{i}" for i in range(300)], vecs)
    assert len(index) == 300 and index.capacity >= 300
    key, score = index.search(vecs[42], 1)[0]
    assert key == "k42" and abs(score - 1.0) < 1e-4
    assert index.remove("k42") and not index.remove("k42") and "k42" not in index
    assert all(k != "k42" for k, _ in index.search(vecs[42], 5))
    assert index.search(vecs[0], 3)[0][0] == "k0"


def test_replace_key_and_empty() -> None:
    rng = np.random.default_rng(1)
    a, b = unit(rng, 2)
    index = VectorIndex(16)
    assert index.search(a) == []
    index.add("x", a)
    index.add("x", b)
    assert len(index) == 1 and index.search(b)[0][0] == "x"
    assert np.allclose(index.vector("x"), b, atol=1e-6)


def test_compaction_keeps_live_entries() -> None:
    rng = np.random.default_rng(2)
    vecs = unit(rng, 400)
    index = VectorIndex(16, compact_at=0.25)
    index.add_many([f"k{i}" for i in range(400)], vecs)
    for i in range(0, 400, 2):
        index.remove(f"k{i}")
    assert len(index) == 200 and index._dead < 200  # compacted on the way
    assert index.search(vecs[7], 1)[0][0] == "k7"


def test_vectors_pack_to_float16_and_bad_text_unpacks_to_none() -> None:
    vec = np.random.default_rng(0).standard_normal(8).astype(np.float32)
    back = unpack_vector(pack_vector(vec), 8)
    assert back is not None and back.dtype == np.float32 and np.allclose(back, vec, atol=2e-3)
    assert unpack_vector(pack_vector(vec), 9) is None  # another dimension
    for bad in (None, 12, "not base64!", pack_vector(np.array([np.inf] * 8))):
        assert unpack_vector(bad, 8) is None
