"""Unstructured and N:M pruning on tiny models: exact sparsity, compact on disk, dense again on load."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from infopt.compress.prune import MagnitudeConfig, RecoveryConfig, WandaConfig, prune, read_sparse, write_sparse
from infopt.compress.prune._common import prunable_linears
from infopt.compress.prune._unstructured import compute_masks, schedule
from infopt.data import TextDataset
from infopt.errors import InfoptError
from infopt.models import LoadedModel, load_model, save_model, weight_files


def _zero_fraction(w: torch.Tensor) -> float:
    return float((w == 0).float().mean())


def test_only_linears_inside_blocks_are_pruned(tiny_bert_classifier: LoadedModel) -> None:
    names = set(prunable_linears(tiny_bert_classifier.model))
    assert names and all(".layer." in n for n in names)
    assert not any("pooler" in n or "classifier" in n for n in names)
    assert "bert.encoder.layer.0.attention.self.query" not in prunable_linears(
        tiny_bert_classifier.model, exclude=["*.query"]
    )


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_magnitude_per_layer_hits_the_sparsity_in_every_matrix(
    tiny_bert_classifier: LoadedModel, sparsity: float
) -> None:
    pruned = prune(tiny_bert_classifier, MagnitudeConfig(sparsity=sparsity))
    for name, lin in prunable_linears(pruned.model).items():
        assert _zero_fraction(lin.weight) == pytest.approx(sparsity, abs=1e-3), name
        original = tiny_bert_classifier.model.get_submodule(name).weight
        kept = lin.weight != 0
        if sparsity:  # the survivors are the largest magnitudes, unchanged
            assert original.abs()[kept].min() >= original.abs()[~kept].max()
        assert torch.equal(lin.weight[kept], original[kept])
    assert pruned.manifest.format == "sparse" and pruned.manifest.method == "prune:magnitude"
    assert pruned.manifest.recipe[-1]["config"]["sparsity"] == sparsity


def test_input_model_is_not_modified(tiny_bert_classifier: LoadedModel) -> None:
    before = copy.deepcopy(tiny_bert_classifier.model.state_dict())
    prune(tiny_bert_classifier, MagnitudeConfig(sparsity=0.5))
    after = tiny_bert_classifier.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_global_and_row_scopes() -> None:
    scores = {"a": torch.arange(8.0).reshape(2, 4), "b": torch.arange(8.0, 16.0).reshape(2, 4)}
    glob = compute_masks(scores, 0.5, "global", None)
    assert not glob["a"].any() and glob["b"].all()  # all of `a` is below all of `b`
    row = compute_masks(scores, 0.5, "row", None)
    assert row["a"].tolist() == [[False, False, True, True]] * 2


def test_two_four_keeps_two_of_every_four(tiny_llama: LoadedModel, texts: list[str]) -> None:
    for config in (MagnitudeConfig(pattern="2:4"), WandaConfig(pattern="2:4")):
        pruned = prune(tiny_llama, config, calibration=texts)
        for lin in prunable_linears(pruned.model).values():
            groups = (lin.weight != 0).reshape(lin.out_features, -1, 4).sum(-1)
            assert (groups == 2).all()


def test_two_four_refuses_widths_not_divisible(tiny_llama: LoadedModel) -> None:
    with pytest.raises(InfoptError, match="multiple of 8"):
        compute_masks({"w": torch.rand(4, 12)}, 0.75, "layer", "2:8")


def test_wanda_uses_activations_and_differs_from_magnitude(tiny_llama: LoadedModel, texts: list[str]) -> None:
    model = copy.deepcopy(tiny_llama.model)
    with torch.no_grad():  # make input feature 0 of every FFN down-projection tiny in weight but huge in activation
        for layer in model.model.layers:
            layer.mlp.down_proj.weight[:, 0] = 1e-4
            layer.post_attention_layernorm.weight.fill_(1.0)
    loaded = dataclasses.replace(tiny_llama, model=model)
    wanda = prune(loaded, WandaConfig(sparsity=0.5), calibration=texts)
    magnitude = prune(loaded, MagnitudeConfig(sparsity=0.5, scope="row"))
    changed = [
        name for name, lin in prunable_linears(wanda.model).items()
        if not torch.equal(lin.weight != 0, prunable_linears(magnitude.model)[name].weight != 0)
    ]
    assert changed
    for lin in prunable_linears(wanda.model).values():
        assert _zero_fraction(lin.weight) == pytest.approx(0.5, abs=1e-3)


def test_wanda_needs_calibration_texts(tiny_llama: LoadedModel) -> None:
    with pytest.raises(InfoptError, match="calibration"):
        prune(tiny_llama, WandaConfig())


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_sparse_folder_is_smaller_and_loads_back_equal(
    tiny_bert_classifier: LoadedModel, tmp_path: Path, texts: list[str], sparsity: float
) -> None:
    dense_dir, sparse_dir = tmp_path / "dense", tmp_path / "sparse"
    save_model(tiny_bert_classifier, dense_dir)
    pruned = save_model(prune(tiny_bert_classifier, MagnitudeConfig(sparsity=sparsity, exclude=())), sparse_dir)
    reloaded = load_model(sparse_dir)
    assert reloaded.manifest.format == "sparse" and reloaded.manifest.fingerprint == pruned.manifest.fingerprint
    assert torch.allclose(reloaded.predict(texts), pruned.predict(texts), atol=0)
    assert all(not p.is_sparse for p in reloaded.model.parameters())  # dense again for inference
    linears = prunable_linears(pruned.model).values()
    linear_bytes = sum(lin.weight.numel() * 4 for lin in linears)
    dense_bytes, sparse_bytes = (sum(f.stat().st_size for f in weight_files(d)) for d in (dense_dir, sparse_dir))
    saved = dense_bytes - sparse_bytes
    # each pruned float32 weight now costs 1/8 byte of mask, plus 4 bytes if kept (and ~100 bytes of header)
    expected = linear_bytes * (sparsity - 1 / 32)
    assert expected - 200 * len(linears) < saved <= expected


def test_sparse_format_keeps_tied_weights_and_dtypes(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    model = tiny_llama.model
    write_sparse(model, tmp_path / "w.safetensors")
    state = read_sparse(tmp_path / "w.safetensors")
    assert set(state) == set(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_sparse_format_rejects_other_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(InfoptError, match="not an infopt sparse"):
        read_sparse(tmp_path / "x.safetensors")


def test_gradual_schedule_is_cubic_and_ends_at_target() -> None:
    steps = schedule(0.9, 3)
    assert steps[-1] == pytest.approx(0.9) and steps[0] > 0.9 / 3 and steps == sorted(steps)


def test_gradual_pruning_with_recovery_keeps_pruned_weights_at_zero(
    tiny_bert_classifier: LoadedModel, reviews: TextDataset
) -> None:
    recovery = RecoveryConfig(epochs=1.0, batch_size=8, max_length=16, lr=1e-3)
    pruned = prune(tiny_bert_classifier, MagnitudeConfig(sparsity=0.8, steps=2, recovery=recovery), train=reviews)
    info = pruned.manifest.metrics["prune"]
    assert [s["sparsity"] for s in info["steps"]] == pytest.approx([0.7, 0.8])
    assert all(s["recovery"]["epochs"] == pytest.approx(0.5) for s in info["steps"])
    for lin in prunable_linears(pruned.model).values():
        assert _zero_fraction(lin.weight) == pytest.approx(0.8, abs=1e-3)
    changed = [
        n for n, p in pruned.model.named_parameters() if not torch.equal(p, tiny_bert_classifier.model.get_parameter(n))
    ]
    assert "classifier.weight" in changed  # it was trained, not only pruned


def test_recovery_of_a_classifier_needs_labelled_data(tiny_bert_classifier: LoadedModel) -> None:
    with pytest.raises(InfoptError, match="labelled"):
        prune(tiny_bert_classifier, MagnitudeConfig(recovery=RecoveryConfig()))


def test_quantized_and_non_torch_models_are_refused(tiny_bert_classifier: LoadedModel) -> None:
    quantized = dataclasses.replace(
        tiny_bert_classifier,
        manifest=dataclasses.replace(tiny_bert_classifier.manifest, recipe=[{"stage": "quantize", "config": {}}]),
    )
    with pytest.raises(InfoptError, match="quantized"):
        prune(quantized, MagnitudeConfig())
    with pytest.raises(InfoptError, match="PyTorch"):
        prune(dataclasses.replace(tiny_bert_classifier, model=object()), MagnitudeConfig())


def test_models_without_blocks_are_refused(tiny_bert_classifier: LoadedModel) -> None:
    flat = dataclasses.replace(tiny_bert_classifier, model=nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(InfoptError, match="no Linear layers"):
        prune(flat, MagnitudeConfig())
