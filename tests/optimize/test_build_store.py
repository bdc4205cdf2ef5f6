"""The build store: variants kept on disk by (parent, steps, data) and reused by a later run; measured results too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from infopt.data import TextDataset
from infopt.evaluate import BenchConfig, EvalSpec, SpeedResult, VariantResult
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize import BuildStore, ResultStore, StageInputs, build, parse_recipes
from infopt.optimize import _recipes as recipes_module


def saved(model: LoadedModel, folder: Path) -> LoadedModel:
    save_model(model, folder)
    return load_model(folder)


def test_a_second_run_reuses_the_stored_builds(
    tiny_bert_classifier: LoadedModel, make_data: Callable[..., TextDataset], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = saved(tiny_bert_classifier, tmp_path / "base")
    data = make_data(32)
    inputs = StageInputs(data.texts[:8], data)
    (recipe,) = parse_recipes(["prune-unstructured-50+dynamic-int8"], "classification")
    store = BuildStore(inputs, tmp_path / "builds")
    first = build(recipe, base, inputs, store)
    parent = tmp_path / "builds" / base.manifest.fingerprint
    assert len([p for p in parent.iterdir() if (p / "infopt.json").is_file()]) == 2  # both prefixes
    assert not [p for p in parent.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    assert store.hits == []

    calls: list[str] = []
    real = recipes_module.apply_step

    def counting(model: LoadedModel, step: object, inp: StageInputs) -> LoadedModel:
        calls.append(type(step).__name__)
        return real(model, step, inp)

    monkeypatch.setattr(recipes_module, "apply_step", counting)
    again = BuildStore(inputs, tmp_path / "builds")  # a new run
    second = build(recipe, base, inputs, again)
    assert calls == [] and len(again.hits) == 1
    ids = data.texts[:4]
    assert torch.equal(torch.tensor(first.predict(ids)), torch.tensor(second.predict(ids)))
    # a longer chain reuses the stored prefix and builds only its new step
    (longer,) = parse_recipes(["prune-unstructured-50"], "classification")
    build(longer, base, inputs, BuildStore(inputs, tmp_path / "builds"))
    assert calls == []
    # other training data: built again
    other = StageInputs(data.texts[:8], make_data(32, seed=1))
    build(recipe, base, other, BuildStore(other, tmp_path / "builds"))
    assert calls == ["MagnitudeConfig", "DynamicInt8Config"]


def test_a_model_without_fingerprint_stays_in_memory(tiny_bert_classifier: LoadedModel, tmp_path: Path) -> None:
    (recipe,) = parse_recipes(["dynamic-int8"], "classification")
    store = BuildStore(StageInputs(), tmp_path / "builds")
    build(recipe, tiny_bert_classifier, StageInputs(), store)
    assert not (tmp_path / "builds").exists()
    assert store.get(tiny_bert_classifier, recipe.steps) is not None


def test_measured_results_are_cached_by_data_and_machine(tmp_path: Path) -> None:
    spec = EvalSpec("classification", ["a", "b"], [0, 1])
    machine = {"model_name": "AMD EPYC", "flags": ["avx2"], "cores": 2}
    r = VariantResult("v", "m", "classification", {"accuracy": 50.0}, SpeedResult(1, 2, 3, 4, 32, 2), 1.0, 2.0, 3,
                      fingerprint="abc")
    store = ResultStore("parent", spec, BenchConfig(), machine, tmp_path)
    assert store.get("abc") is None
    store.put(r)
    assert store.get("abc") == r
    assert ResultStore("parent", spec, BenchConfig(), machine, tmp_path).get("abc") == r
    assert ResultStore("parent", spec, BenchConfig(), machine | {"cores": 16}, tmp_path).get("abc") is None
    assert ResultStore("other", spec, BenchConfig(), machine, tmp_path).get("abc") is None
    assert ResultStore("parent", EvalSpec("classification", ["a", "c"], [0, 1]), BenchConfig(), machine,
                       tmp_path).get("abc") is None
