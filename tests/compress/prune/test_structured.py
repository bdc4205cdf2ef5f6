"""Structured pruning on tiny BERT and Llama models: smaller ordinary models, equal when nothing is removed."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
)

from infopt.compress.prune import RecoveryConfig, StructuredConfig, prune
from infopt.compress.prune import _recovery as recovery_module
from infopt.compress.quantize import quantize
from infopt.data import TextDataset
from infopt.errors import InfoptError
from infopt.models import LoadedModel, Manifest, load_model, save_model


def _llama_logits(model: torch.nn.Module, texts: list[str], tokenizer) -> torch.Tensor:  # type: ignore[no-untyped-def]
    ids = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits


@pytest.mark.parametrize("fixture", ["tiny_bert_classifier", "tiny_bert_embedder", "tiny_llama"])
def test_removing_nothing_gives_the_same_outputs(
    fixture: str, request: pytest.FixtureRequest, texts: list[str]
) -> None:
    model: LoadedModel = request.getfixturevalue(fixture)
    pruned = prune(model, StructuredConfig(heads=0.0, ffn=0.0, layers=0))
    assert pruned.manifest.format == "hf"
    torch.testing.assert_close(pruned.predict(texts), model.predict(texts), atol=1e-6, rtol=1e-5)


def test_llama_shrinks_into_an_ordinary_model(tiny_llama: LoadedModel, texts: list[str], tmp_path: Path) -> None:
    config = StructuredConfig(heads=0.5, ffn=0.25, layers=1, importance="taylor")
    pruned = prune(tiny_llama, config, calibration=texts)
    c = pruned.model.config
    assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (1, 2, 1, 8)
    assert c.intermediate_size == 48
    layer = pruned.model.model.layers[0]
    assert layer.self_attn.q_proj.weight.shape == (16, 32) and layer.self_attn.k_proj.weight.shape == (8, 32)
    assert layer.self_attn.o_proj.weight.shape == (32, 16) and layer.mlp.down_proj.weight.shape == (32, 48)
    assert layer.self_attn.layer_idx == 0
    assert pruned.manifest.format == "hf"
    save_model(pruned, tmp_path / "llama")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "llama").eval()  # plain transformers, no infopt
    torch.testing.assert_close(_llama_logits(plain, texts, tiny_llama.tokenizer),
                               _llama_logits(pruned.model, texts, tiny_llama.tokenizer))
    ids = tiny_llama.tokenizer(texts[:1], return_tensors="pt")["input_ids"]
    out = plain.generate(input_ids=ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)  # KV cache works
    assert out.shape[1] == ids.shape[1] + 4


def test_llama_keeps_the_most_important_kv_groups(tiny_llama: LoadedModel) -> None:
    model = tiny_llama.model
    with torch.no_grad():
        model.model.layers[0].self_attn.k_proj.weight[:8] *= 0.01  # KV group 0 of layer 0: tiny weights
        model.model.layers[0].self_attn.q_proj.weight[:16] *= 0.01
        model.model.layers[0].self_attn.v_proj.weight[:8] *= 0.01
        model.model.layers[0].self_attn.o_proj.weight[:, :16] *= 0.01
    pruned = prune(tiny_llama, StructuredConfig(heads=0.5))
    kept = pruned.model.model.layers[0].self_attn.k_proj.weight
    torch.testing.assert_close(kept, model.model.layers[0].self_attn.k_proj.weight[8:])


def test_bert_ffn_and_layers_load_with_plain_transformers(
    tiny_bert_classifier: LoadedModel, texts: list[str], tmp_path: Path
) -> None:
    pruned = prune(tiny_bert_classifier, StructuredConfig(ffn=0.5, layers=(0,)))
    assert pruned.manifest.format == "hf"
    assert (pruned.model.config.num_hidden_layers, pruned.model.config.intermediate_size) == (1, 32)
    save_model(pruned, tmp_path / "bert")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "bert").eval()
    batch = pruned.encode(texts)
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch).logits, pruned.predict(texts))
    # layer 1 survived: its attention weights are the original layer 1's
    torch.testing.assert_close(plain.bert.encoder.layer[0].attention.self.query.weight,
                               tiny_bert_classifier.model.bert.encoder.layer[1].attention.self.query.weight)


_PLAIN_LOAD = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
assert "infopt" not in sys.modules
folder, texts = sys.argv[1], sys.argv[2:]
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
with torch.no_grad():
    logits = model(**tokenizer(texts, padding=True, truncation=True, return_tensors="pt")).logits
print(json.dumps([type(model).__name__, model.config.heads_per_layer, logits.tolist()]))
"""


def test_bert_heads_are_cut_out_and_load_with_plain_transformers(
    tiny_bert_classifier: LoadedModel, texts: list[str], tmp_path: Path
) -> None:
    pruned = prune(tiny_bert_classifier, StructuredConfig(heads=0.5, ffn=0.5))
    attn = pruned.model.bert.encoder.layer[0].attention
    assert attn.self.query.weight.shape == (16, 32) and attn.output.dense.weight.shape == (32, 16)
    assert (pruned.manifest.format, pruned.model.config.heads_per_layer) == ("hf", [1, 1])
    save_model(pruned, tmp_path / "bert")
    assert (tmp_path / "bert" / "modeling_pruned_bert.py").is_file()
    auto_map = json.loads((tmp_path / "bert" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_pruned_bert.PrunedBertModel"  # a classifier also loads as an encoder
    # a fresh interpreter with transformers only (no infopt imported) loads it with from_pretrained
    out = subprocess.run([sys.executable, "-c", _PLAIN_LOAD, str(tmp_path / "bert"), *texts],
                         capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL).stdout
    name, heads, logits = json.loads(out)
    assert (name, heads) == ("PrunedBertForSequenceClassification", [1, 1])
    torch.testing.assert_close(torch.tensor(logits), pruned.predict(texts))
    torch.testing.assert_close(load_model(tmp_path / "bert").predict(texts), pruned.predict(texts))
    # quantizing the pruned model still saves and loads
    both = save_model(quantize(pruned, "dynamic-int8"), tmp_path / "both")
    torch.testing.assert_close(load_model(tmp_path / "both").predict(texts), both.predict(texts))


def test_a_head_pruned_model_can_be_pruned_again(tiny_bert_embedder: LoadedModel, texts: list[str]) -> None:
    assert prune(tiny_bert_embedder, StructuredConfig(ffn=0.25)).model.config.model_type == "bert"  # heads kept
    once = prune(tiny_bert_embedder, StructuredConfig(heads=0.5))
    twice = prune(once, StructuredConfig(ffn=0.5, layers=(0,)))
    assert twice.model.config.model_type == "pruned_bert" and twice.model.config.heads_per_layer == [1]
    assert (twice.model.config.intermediate_size, twice.predict(texts).shape) == (32, (len(texts), 32))


def test_layers_by_influence_drop_the_identity_like_layer(tiny_bert_embedder: LoadedModel, texts: list[str]) -> None:
    model = tiny_bert_embedder.model
    with torch.no_grad():  # layer 1 becomes (almost) the identity: attention and FFN outputs ~0
        layer = model.encoder.layer[1]
        for lin in (layer.attention.output.dense, layer.output.dense):
            lin.weight.zero_()
            lin.bias.zero_()
        layer.attention.output.LayerNorm.reset_parameters()
        layer.output.LayerNorm.reset_parameters()
    pruned = prune(tiny_bert_embedder, StructuredConfig(layers=1), calibration=texts)
    assert pruned.manifest.metrics["prune"]["layers_removed"] == [1]


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (StructuredConfig(heads=0.8), "all 2 attention heads"),
        (StructuredConfig(ffn=0.999), "all 64 FFN neurons"),
        (StructuredConfig(layers=2), "all 2 layers"),
        (StructuredConfig(layers=(0, 1)), "every layer"),
        (StructuredConfig(layers=(5,)), "do not exist"),
    ],
)
def test_bad_structured_configs_are_refused(tiny_bert_classifier: LoadedModel, config: StructuredConfig,
                                            match: str) -> None:
    with pytest.raises(InfoptError, match=match):
        prune(tiny_bert_classifier, config)


def test_pruning_every_kv_group_is_refused(tiny_llama: LoadedModel) -> None:
    with pytest.raises(InfoptError, match="all 2 KV-head groups"):
        prune(tiny_llama, StructuredConfig(heads=0.9))


def test_unsupported_architecture_is_refused(tiny_llama: LoadedModel) -> None:
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100)).eval()
    with pytest.raises(InfoptError, match=r"does not support GPT2LMHeadModel.*model_type 'gpt2'"):
        prune(dataclasses.replace(tiny_llama, model=gpt2), StructuredConfig(ffn=0.5))


def test_taylor_needs_a_loss_and_layer_counts_need_texts(tiny_bert_embedder: LoadedModel) -> None:
    with pytest.raises(InfoptError, match="magnitude"):
        prune(tiny_bert_embedder, StructuredConfig(ffn=0.5, importance="taylor"), calibration=["a text"])
    with pytest.raises(InfoptError, match="calibration"):
        prune(tiny_bert_embedder, StructuredConfig(layers=1))


def test_taylor_uses_labels_or_pseudo_labels(tiny_bert_classifier: LoadedModel, reviews: TextDataset) -> None:
    config = StructuredConfig(heads=0.5, ffn=0.5, importance="taylor")
    with_labels = prune(tiny_bert_classifier, config, train=reviews)
    pseudo = prune(tiny_bert_classifier, config, calibration=reviews.texts)
    for p in (with_labels, pseudo):
        assert p.model.bert.encoder.layer[0].intermediate.dense.out_features == 32


@pytest.mark.parametrize("distill", [True, False])
def test_recovery_distils_from_the_unpruned_model_or_uses_labels_only(
    tiny_bert_classifier: LoadedModel, reviews: TextDataset, distill: bool
) -> None:
    recovery = RecoveryConfig(epochs=1.0, batch_size=8, max_length=16, distill=distill)
    pruned = prune(tiny_bert_classifier, StructuredConfig(ffn=0.5, recovery=recovery), train=reviews)
    info = pruned.manifest.metrics["prune"]["recovery"]
    assert info["distilled"] is distill and info["epochs"] == 1.0
    assert not pruned.model.training


def test_causal_lm_recovery_runs_on_text(tiny_llama: LoadedModel, texts: list[str]) -> None:
    recovery = RecoveryConfig(epochs=1.0, batch_size=2, max_length=8)
    pruned = prune(tiny_llama, StructuredConfig(ffn=0.5, recovery=recovery), calibration=texts * 3)
    assert pruned.manifest.metrics["prune"]["recovery"]["distilled"] is True


def test_embedder_recovery_is_refused(tiny_bert_embedder: LoadedModel, texts: list[str]) -> None:
    with pytest.raises(InfoptError, match="classifiers and causal LMs"):
        prune(tiny_bert_embedder, StructuredConfig(ffn=0.5, recovery=RecoveryConfig()), calibration=texts)


def test_roberta_is_supported(tokenizer, texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    from transformers import RobertaConfig

    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=140, pad_token_id=tokenizer.pad_token_id)
    model = AutoModel.from_config(config).eval()
    loaded = LoadedModel(model, tokenizer, Manifest(name="tiny-roberta", task="embedding"))
    pruned = prune(loaded, StructuredConfig(ffn=0.5, layers=(1,)))
    assert pruned.model.config.num_hidden_layers == 1 and pruned.predict(texts).shape == (len(texts), 32)


def test_roberta_heads_are_refused(tokenizer) -> None:  # type: ignore[no-untyped-def]
    from transformers import RobertaConfig

    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=140, pad_token_id=tokenizer.pad_token_id)
    model = AutoModel.from_config(config).eval()
    loaded = LoadedModel(model, tokenizer, Manifest(name="tiny-roberta", task="embedding"))
    with pytest.raises(InfoptError, match="RoBERTa"):
        prune(loaded, StructuredConfig(heads=0.5))


def test_family_paths_name_linear_layers(tiny_bert_classifier: LoadedModel, tiny_llama: LoadedModel) -> None:
    from infopt.compress.prune._families import family_of, linear_at

    for model in (tiny_bert_classifier.model, tiny_llama.model):
        family = family_of(model)
        block = family.block_list(model)[0]
        for path in (family.q, family.k, family.v, family.o, *family.ffn_in, family.ffn_out):
            assert isinstance(linear_at(block, path), torch.nn.Linear)
    with pytest.raises(TypeError, match=r"not an nn\.Linear"):
        linear_at(tiny_llama.model.model, "layers")


def test_causal_lm_recovery_needs_a_block_of_text(tiny_llama: LoadedModel) -> None:
    config = RecoveryConfig(epochs=1.0, batch_size=2, max_length=64)
    student = tiny_llama.model
    with pytest.raises(InfoptError, match="fewer than 64 tokens"):
        recovery_module.recover(student, student, tiny_llama.tokenizer, "causal-lm", config, None, ["too short"])
