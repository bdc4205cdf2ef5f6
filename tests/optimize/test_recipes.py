"""Recipes: parsed once, composed by concatenation, built by one function, prefixes built once."""

from __future__ import annotations

import pytest

from infopt.compress.prune import StructuredConfig
from infopt.compress.quantize import QUANT_SCHEMES
from infopt.data import TextDataset
from infopt.errors import InfoptError, NotApplicable, UserError
from infopt.models import LoadedModel
from infopt.optimize import (
    DEFAULT_RECIPES,
    BuildCache,
    Recipe,
    StageInputs,
    build,
    parse_recipes,
    recipe_names,
    stage_of,
)


def test_names_are_parsed_once_into_recipes() -> None:
    q8, chain = parse_recipes(["dynamic-int8", "prune-structured+onnx-int8"], "classification")
    assert q8 == Recipe("dynamic-int8", "quantize: dynamic-int8", (QUANT_SCHEMES["dynamic-int8"],))
    assert chain.name == "prune-structured+onnx-int8"
    assert [stage_of(s) for s in chain.steps] == ["prune", "quantize"]
    assert isinstance(chain.steps[0], StructuredConfig) and chain.steps[0].recovery is not None
    assert chain == parse_recipes(["prune-structured"], "classification")[0] + parse_recipes(["onnx-int8"],
                                                                                             "classification")[0]


def test_task_decides_defaults_and_what_applies() -> None:
    assert {r.name for r in parse_recipes(None, "causal-lm")} >= {"weight-int8", "weight-int4"}
    (lm,) = parse_recipes(["prune-structured"], "causal-lm")
    assert lm.steps[0].recovery is None  # LMs are pruned without recovery by default
    assert "onnx-int8" not in recipe_names("causal-lm") and "onnx-int8" in recipe_names("embedding")
    with pytest.raises(NotApplicable, match="onnx-int8 does not apply"):
        parse_recipes(["onnx-int8"], "causal-lm")
    with pytest.raises(NotApplicable, match="distill-l3"):
        parse_recipes(["distill-l3"], "embedding")
    with pytest.raises(UserError, match="Unknown recipe 'int3'"):
        parse_recipes(["dynamic-int8+int3"], "classification")


def test_repeats_are_dropped_and_any_layer_count_is_a_distill_recipe() -> None:
    recipes = parse_recipes(["dynamic-int8", "dynamic-int8", "distill-l4"], "classification")
    assert [r.name for r in recipes] == ["dynamic-int8", "distill-l4"]
    assert recipes[1].steps[0].student.num_layers == 4


def test_the_manifest_records_the_recipes_steps(tiny_bert_classifier: LoadedModel) -> None:
    (recipe,) = parse_recipes(["dynamic-int8"], "classification")
    made = build(recipe, tiny_bert_classifier, StageInputs())
    assert made.manifest.name == "dynamic-int8"
    assert made.manifest.recipe == recipe.to_manifest()


def test_a_shared_prefix_is_built_once(tiny_llama: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    import infopt.optimize._recipes as recipes_module

    calls: list[str] = []
    real = recipes_module._STAGES[StructuredConfig]

    def counting(model: LoadedModel, step: object, inputs: StageInputs) -> LoadedModel:
        calls.append("prune")
        return real[1](model, step, inputs)

    monkeypatch.setitem(recipes_module._STAGES, StructuredConfig, (real[0], counting))
    cache = BuildCache()
    texts = ["the film was long and the ending was a surprise to everyone in the room"] * 8
    pruned, both = parse_recipes(["prune-structured", "prune-structured+weight-int8"], "causal-lm")
    a = build(pruned, tiny_llama, StageInputs(texts), cache)
    b = build(both, tiny_llama, StageInputs(texts), cache)
    assert calls == ["prune"]
    assert [s["stage"] for s in b.manifest.recipe] == ["prune", "quantize"] and a.manifest.name == "prune-structured"


def test_recipe_names() -> None:
    assert "prune-structured+onnx-int8" in DEFAULT_RECIPES["classification"]
    assert {"prune-wanda-50", "prune-2:4"} <= set(DEFAULT_RECIPES["causal-lm"])
    named = parse_recipes(("prune-unstructured-50", "prune-magnitude-2:4", "prune-structured+weight-int8"), "causal-lm")
    assert [c.name for c in named] == ["prune-unstructured-50", "prune-magnitude-2:4", "prune-structured+weight-int8"]
    with pytest.raises(UserError, match="Unknown recipe"):
        parse_recipes(("prune-everything",), "classification")


def test_the_distill_recipe_builds_a_student(tiny_teacher: LoadedModel, reviews: TextDataset) -> None:
    (recipe,) = parse_recipes(["distill-l3"], "classification")
    assert recipe.needs() == {"train"}
    student = build(recipe, tiny_teacher, StageInputs(reviews.texts[:8], reviews))
    assert student.manifest.name == "distill-l3" and student.model.config.num_hidden_layers == 3
    with pytest.raises(InfoptError, match="train split"):
        build(recipe, tiny_teacher, StageInputs(reviews.texts[:8], None))
    with pytest.raises(InfoptError, match="Unknown recipe"):
        parse_recipes(["distill-lx"], "classification")


def test_the_schemes_for_modern_cpus_are_recipes() -> None:
    names = recipe_names("classification")
    assert {"onnx-int8-vnni", "onnx-int8-emb4", "onnx-int8-vnni-emb4", "torch-bf16", "vocab-trim"} <= set(names)
    assert "vocab-trim" in recipe_names("embedding") and "vocab-trim" not in recipe_names("causal-lm")
    assert "torch-bf16" in recipe_names("causal-lm") and "onnx-int8-vnni" not in recipe_names("causal-lm")
    with pytest.raises(NotApplicable, match="vocab-trim does not apply"):
        parse_recipes(["vocab-trim"], "causal-lm")
    (trim,) = parse_recipes(["vocab-trim"], "classification")
    assert stage_of(trim.steps[0]) == "vocab-trim" and trim.needs() == {"train", "calibration"}
    assert trim.to_manifest() == [{"stage": "vocab-trim", "config": {"version": 1, "min_count": 1, "keep_chars": True}}]


@pytest.mark.parametrize(("name", "stages"), [
    ("prune-structured+onnx-int8-vnni", ["prune", "quantize"]),
    ("distill-l3+prune-structured+onnx-int8-emb4", ["distill", "prune", "quantize"]),
    ("distill-l3+prune-structured+vocab-trim+onnx-int8-vnni-emb4", ["distill", "prune", "vocab-trim", "quantize"]),
    ("vocab-trim+torch-bf16", ["vocab-trim", "quantize"]),
])
def test_the_new_recipes_compose_as_chains(name: str, stages: list[str]) -> None:
    (chain,) = parse_recipes([name], "classification")
    assert chain.name == name and [stage_of(s) for s in chain.steps] == stages
    assert chain.steps[-1] == QUANT_SCHEMES[name.split("+")[-1]]


def test_a_long_chain_builds(tiny_teacher: LoadedModel, reviews: TextDataset, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from infopt.models import load_model, save_model

    (chain,) = parse_recipes(["distill-l3+prune-structured+vocab-trim+onnx-int8-vnni-emb4"], "classification")
    made = build(chain, tiny_teacher, StageInputs(reviews.texts[:32], reviews))
    stages = [s["stage"] for s in made.manifest.recipe]
    assert "distill" in stages and stages[-3:] == ["prune", "vocab-trim", "quantize"]
    assert made.manifest.metrics["quantize"]["word_embedding"]["rows"] < 300  # the tiny data's vocabulary
    save_model(made, tmp_path / "v")
    back = load_model(tmp_path / "v")
    assert back.num_parameters() == made.num_parameters() > 0
    assert (back.predict(reviews.texts[:48]).argmax(-1) == tiny_teacher.predict(reviews.texts[:48]).argmax(-1)
            ).float().mean() > 0.6
