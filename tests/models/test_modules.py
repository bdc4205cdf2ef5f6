"""set_submodule, the transformer-block table, forward_hooks and eval_mode on tiny models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infopt.models import LoadedModel
from infopt.models._modules import BLOCK_PATHS, base_of, block_path, eval_mode, forward_hooks, set_submodule


def test_set_submodule_replaces_nested_and_top_level_modules() -> None:
    root = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Linear(2, 1))
    new = nn.Identity()
    set_submodule(root, "0.1", new)
    assert root.get_submodule("0.1") is new
    top = nn.Linear(2, 3)
    set_submodule(root, "1", top)
    assert root[1] is top


def test_blocks_found_inside_the_base_model(tiny_bert_classifier: LoadedModel, tiny_llama: LoadedModel) -> None:
    bert, llama = tiny_bert_classifier.model, tiny_llama.model
    assert base_of(bert) is bert.bert and base_of(llama) is llama.model
    assert block_path(bert) == BLOCK_PATHS["bert"] == "encoder.layer"
    assert block_path(llama) == BLOCK_PATHS["llama"] == "layers"
    assert block_path(bert.bert) == "encoder.layer"  # a base model is its own base
    assert block_path(nn.Linear(2, 2)) is None
    plain = nn.Module()
    plain.layers = nn.ModuleList([nn.Linear(2, 2)])
    assert base_of(plain) is plain and block_path(plain) == "layers"


def test_forward_hooks_run_inside_and_are_removed_even_on_error() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    seen: list[str] = []
    pre = [(model[0], lambda m, args: seen.append("pre"))]
    post = [(model[1], lambda m, args, out: seen.append("post"))]
    with forward_hooks(pre, post):
        model(torch.ones(1, 2))
    assert seen == ["pre", "post"]
    with pytest.raises(RuntimeError), forward_hooks(pre, post):
        raise RuntimeError
    model(torch.ones(1, 2))
    assert seen == ["pre", "post"]  # nothing left registered
    assert not model[0]._forward_pre_hooks and not model[1]._forward_hooks


def test_forward_hooks_with_kwargs_can_replace_the_output() -> None:
    lin = nn.Linear(2, 2)
    got: list[str] = []

    def pre(m: nn.Module, args: tuple, kwargs: dict) -> None:
        got.extend(kwargs)

    def post(m: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> torch.Tensor:
        return out * 0

    with forward_hooks([(lin, pre)], [(lin, post)], with_kwargs=True):
        out = lin(input=torch.ones(1, 2))
    assert got == ["input"]
    assert torch.equal(out, torch.zeros(1, 2))


def test_eval_mode_restores_the_mode() -> None:
    model = nn.Dropout(0.5).train()
    with eval_mode(model) as m:
        assert m is model and not model.training
    assert model.training
    model.eval()
    with pytest.raises(ValueError), eval_mode(model):
        raise ValueError
    assert not model.training
