"""Token-level distillation of a causal LM into one with fewer layers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from infopt.compress.distill import DistillConfig, StudentConfig, distill, make_student, token_blocks
from infopt.errors import InfoptError
from infopt.evaluate import perplexity
from infopt.models import LoadedModel
from infopt.train import FinetuneConfig

CORPUS = [
    "the market rose today as traders bought shares of large companies and small ones alike",
    "rain is expected in the north tomorrow while the south stays dry and warm for the week",
    "the city council voted to build a new bridge over the river after a long public debate",
    "scientists found that the new drug lowers blood pressure in most patients after a month",
] * 8
LM = DistillConfig(temperature=2.0, alpha=0.5, max_steps=25,
                   train=FinetuneConfig(epochs=1, batch_size=4, lr=1e-2, max_length=16, seed=0))


def _next_token_kl(student: LoadedModel, teacher: LoadedModel, ids: torch.Tensor) -> float:
    with torch.inference_mode():
        s = student.model(input_ids=ids).logits.log_softmax(-1)
        t = teacher.model(input_ids=ids).logits.log_softmax(-1)
    return (t.exp() * (t - s)).sum(-1).mean().item()


def test_token_blocks(tiny_llama: LoadedModel) -> None:
    blocks = token_blocks(tiny_llama, CORPUS, 16, 10)
    assert blocks.shape == (10, 16)
    assert token_blocks(tiny_llama, CORPUS[:1], 16, 1000).shape[0] < 1000  # runs out of text


def test_student_moves_towards_teacher(tiny_llama: LoadedModel) -> None:
    # a random teacher is near-uniform: first teach it the corpus (alpha = 0: next-token cross-entropy only)
    teacher = distill(tiny_llama, make_student(tiny_llama, StudentConfig(layers=(0, 1))), CORPUS,
                      dataclasses.replace(LM, alpha=0.0, max_steps=40))
    student = make_student(teacher, StudentConfig(layers=(1,)))
    ids = token_blocks(teacher, CORPUS, 16, 8, seed=1)
    before = _next_token_kl(student, teacher, ids)
    trained = distill(teacher, student, CORPUS, dataclasses.replace(LM, alpha=1.0, temperature=1.0))
    assert trained.model.config.num_hidden_layers == 1
    assert _next_token_kl(trained, teacher, ids) < 0.5 * before
    recipe = trained.manifest.recipe[-1]["config"]
    assert recipe["steps"] == 25 and recipe["blocks_seen"] == 100
    assert trained.manifest.method == "distill:token-level"
    assert perplexity(trained, CORPUS[:4], block=16)["perplexity"] > 0


def test_causal_bad_input(tiny_llama: LoadedModel, tiny_bert_classifier: LoadedModel) -> None:
    student = make_student(tiny_llama, StudentConfig(layers=(0,)))
    with pytest.raises(InfoptError, match="empty"):
        distill(tiny_llama, student, [], LM)
    with pytest.raises(InfoptError, match="not available"):
        distill(tiny_llama, student, CORPUS, dataclasses.replace(LM, scheme="online"))
    with pytest.raises(InfoptError):
        distill(tiny_llama, tiny_bert_classifier, CORPUS, LM)
    with pytest.raises(InfoptError, match="one teacher"):
        distill([tiny_llama, tiny_llama], student, CORPUS, LM)
    with pytest.raises(InfoptError, match="fewer than"):
        distill(tiny_llama, student, ["hi"], LM)
