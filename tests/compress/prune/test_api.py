"""Pruning the real bundled models (slow): shapes, plain-transformers reload, equality when nothing is removed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from infopt.compress.prune import StructuredConfig, WandaConfig, prune
from infopt.compress.prune._common import prunable_linears
from infopt.models import load_model, save_model

pytestmark = pytest.mark.slow

TEXTS = ["a gorgeous, witty film", "the plot is thin and the jokes are stale", "not bad at all"]


def test_teacher_heads_and_ffn(tmp_path: Path) -> None:
    teacher = load_model("minilm-l6-rt")
    torch.testing.assert_close(prune(teacher, StructuredConfig()).predict(TEXTS), teacher.predict(TEXTS))
    pruned = prune(teacher, StructuredConfig(heads=1 / 3, ffn=0.5))
    layer = pruned.model.bert.encoder.layer[3]
    assert layer.attention.self.query.out_features == 256 and layer.intermediate.dense.out_features == 768
    assert pruned.model.config.intermediate_size == 768
    save_model(pruned, tmp_path / "t")
    torch.testing.assert_close(load_model(tmp_path / "t").predict(TEXTS), pruned.predict(TEXTS))
    assert pruned.num_parameters() < 0.8 * teacher.num_parameters()


def test_smollm2_structured_is_a_plain_llama(tmp_path: Path) -> None:
    lm = load_model("smollm2-135m")
    pruned = prune(lm, StructuredConfig(heads=1 / 3, ffn=0.25, layers=(29,)))
    c = pruned.model.config
    assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (29, 6, 2, 64)
    assert c.intermediate_size == 1152
    save_model(pruned, tmp_path / "s")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "s").eval()
    ids = lm.tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, pruned.model(input_ids=ids).logits)


def test_smollm2_wanda_two_four() -> None:
    lm = load_model("smollm2-135m")
    pruned = prune(lm, WandaConfig(pattern="2:4", calibration_size=8), calibration=TEXTS * 3)
    for lin in list(prunable_linears(pruned.model).values())[:7]:
        # at most 2 non-zeros in every 4 (some kept weights of the GGUF-converted model are exactly zero)
        assert ((lin.weight != 0).reshape(lin.out_features, -1, 4).sum(-1) <= 2).all()
        assert (lin.weight == 0).float().mean() == pytest.approx(0.5, abs=0.01)
