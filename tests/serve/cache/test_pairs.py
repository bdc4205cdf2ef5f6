"""The committed pair set: size, labels, splits by family, reproducible from its script."""

import importlib.util
import json
from pathlib import Path

from infopt.serve.cache._pairs import PAIRS_FILE, count_pairs, load_pairs

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "make_cache_pairs.py"


def test_size_kinds_and_splits() -> None:
    pairs = load_pairs()
    assert len(pairs) >= 600
    assert {p.split for p in pairs} == {"calibration", "heldout"}
    held = load_pairs("heldout")
    assert 0.2 < len(held) / len(pairs) < 0.4
    kinds = {k for _, k, _ in count_pairs(pairs)}
    assert {"paraphrase", "number-format", "negation", "number", "entity", "scope", "unrelated"} <= kinds
    for p in pairs:
        assert p.same == (p.kind in ("paraphrase", "number-format", "typo")) and p.a != p.b


def test_heldout_families_are_not_in_calibration() -> None:
    cal = {f for p in load_pairs("calibration") for f in p.family.split("+")}
    held = {f for p in load_pairs("heldout") for f in p.family.split("+")}
    assert not cal & held


def test_script_reproduces_the_file() -> None:
    spec = importlib.util.spec_from_file_location("make_cache_pairs", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [json.loads(line) for line in PAIRS_FILE.read_text().splitlines()]
    assert mod.build(0) == rows
