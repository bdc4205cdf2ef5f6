"""split_dataset: deterministic for a seed, stratified, disjoint, covering every row."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from infopt.data import Splits, TextDataset, holdout, split_dataset
from infopt.errors import InfoptError


def _dataset(counts: list[int]) -> TextDataset:
    """Texts `t0`, `t1`, ... (unique ids) with `counts[c]` rows of class c, classes interleaved."""
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    labels = labels[::2] + labels[1::2]  # mix the classes up a little
    names = [f"class{c}" for c in range(len(counts))]
    return TextDataset("toy", [f"t{i}" for i in range(len(labels))], labels, names)


def _parts(s: Splits) -> list[TextDataset]:
    return [s.train, s.validation, s.test]


def test_deterministic_for_a_seed() -> None:
    data = _dataset([60, 40])
    a, b = split_dataset(data, seed=7), split_dataset(data, seed=7)
    assert a == b
    c = split_dataset(data, seed=8)
    assert a.test.texts != c.test.texts


def test_disjoint_and_covering_all_rows() -> None:
    data = _dataset([57, 31, 12])
    parts = _parts(split_dataset(data, seed=3, validation=0.2, test=0.15))
    all_texts = [t for p in parts for t in p.texts]
    assert len(all_texts) == len(data)
    assert sorted(all_texts) == sorted(data.texts)
    assert len(set(all_texts)) == len(data)


def test_rows_keep_their_labels_and_label_names() -> None:
    data = _dataset([30, 30, 20])
    truth = dict(zip(data.texts, data.labels, strict=True))
    for part in _parts(split_dataset(data, seed=0)):
        assert part.label_names == data.label_names
        assert part.name == data.name
        assert all(truth[t] == y for t, y in zip(part.texts, part.labels, strict=True))


def test_stratified_counts() -> None:
    data = _dataset([80, 20])
    s = split_dataset(data, seed=0, validation=0.1, test=0.1)
    assert Counter(s.test.labels) == {0: 8, 1: 2}
    assert Counter(s.validation.labels) == {0: 8, 1: 2}
    assert Counter(s.train.labels) == {0: 64, 1: 16}


def test_stratified_proportions_three_classes() -> None:
    data = _dataset([500, 300, 200])
    s = split_dataset(data, seed=1, validation=0.2, test=0.3)
    assert len(s.test) == 300 and len(s.validation) == 200 and len(s.train) == 500
    for part in _parts(s):
        counts = Counter(part.labels)
        shares = [counts[c] / len(part) for c in range(3)]
        assert shares == pytest.approx([0.5, 0.3, 0.2], abs=0.01)


def test_parts_are_shuffled_not_grouped_by_class() -> None:
    data = _dataset([100, 100])
    train = split_dataset(data, seed=0).train
    # 160 rows; grouped by class would be one run of 0s and one of 1s
    changes = sum(a != b for a, b in itertools.pairwise(train.labels))
    assert changes > 20


def test_too_small_dataset() -> None:
    with pytest.raises(InfoptError) as info:
        split_dataset(_dataset([5, 4]))
    assert "9 rows" in info.value.problem and "at least 10" in info.value.fix


def test_too_small_for_a_split() -> None:
    with pytest.raises(InfoptError, match="too small for a test split"):
        split_dataset(_dataset([6, 6]), test=0.01)
    with pytest.raises(InfoptError, match="too small for a validation split"):
        split_dataset(_dataset([6, 6]), validation=0.0)


def test_minimum_size_works() -> None:
    # per class: round(6 * 0.1) = 1 test and 1 validation row; round(4 * 0.1) = 0
    s = split_dataset(_dataset([6, 4]))
    assert [len(p) for p in _parts(s)] == [8, 1, 1]
    assert s.test.labels == s.validation.labels == [0]
    s = split_dataset(_dataset([5, 5]), validation=0.2, test=0.2)
    assert [sorted(p.labels) for p in _parts(s)] == [[0, 0, 0, 1, 1, 1], [0, 1], [0, 1]]


# --- holdout ---


def test_holdout_keeps_a_tenth_out_for_a_seed() -> None:
    data = _dataset([30, 20])
    rest, held = holdout(data, seed=3)
    assert len(held) == 5 and len(rest) == 45
    assert sorted(rest.texts + held.texts) == sorted(data.texts)
    assert holdout(data, seed=3) == (rest, held)
    order = list(range(len(data)))
    random.Random(3).shuffle(order)
    assert held.texts == [data.texts[i] for i in order[:5]]  # the seeded shuffle's first tenth, unstratified


def test_holdout_keeps_at_least_one_each_side() -> None:
    rest, held = holdout(_dataset([1, 1]), seed=0)
    assert len(rest) == len(held) == 1
    with pytest.raises(InfoptError, match="too few"):
        holdout(_dataset([1]), seed=0)
