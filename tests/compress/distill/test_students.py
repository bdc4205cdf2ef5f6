"""Students: every other teacher layer, a smaller pretrained model, random; layer cutting for BERT and Llama."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from infopt.compress.distill import StudentConfig, cut_layers, evenly_spaced, make_student
from infopt.compress.distill._students import layer_list, student_layers
from infopt.errors import InfoptError
from infopt.models import LoadedModel, save_model


def test_evenly_spaced_keeps_first_and_last() -> None:
    assert evenly_spaced(6, 3) == (0, 2, 5)
    assert evenly_spaced(30, 15)[0] == 0 and evenly_spaced(30, 15)[-1] == 29
    assert len(set(evenly_spaced(30, 15))) == 15
    assert evenly_spaced(4, 4) == (0, 1, 2, 3)
    with pytest.raises(InfoptError):
        evenly_spaced(3, 4)


def test_teacher_layer_student_copies_the_chosen_layers(tiny_bert_classifier: LoadedModel) -> None:
    teacher = tiny_bert_classifier
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    student = make_student(teacher, StudentConfig(layers=(1,)))
    assert len(layer_list(student.model)) == 1 and student.model.config.num_hidden_layers == 1
    assert len(layer_list(teacher.model)) == 2  # teacher untouched
    for k, v in teacher.model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    s_state = student.model.state_dict()
    for k, v in teacher.model.state_dict().items():
        if ".layer.1." in k:
            torch.testing.assert_close(s_state[k.replace(".layer.1.", ".layer.0.")], v)
        elif ".layer." not in k:
            torch.testing.assert_close(s_state[k], v)
    assert student.manifest.labels == teacher.manifest.labels
    assert student_layers(student) == (1,)
    assert student.predict(["a fine film"]).shape == (1, 2)


def test_default_student_is_every_other_layer(tokenizer: PreTrainedTokenizerBase, make_classifier) -> None:
    teacher = make_classifier(tokenizer, layers=6)
    student = make_student(teacher)
    assert student_layers(student) == (0, 2, 5)
    assert student.manifest.name == "tiny-teacher-l3"


def test_cut_student_shares_no_config_with_teacher(tokenizer: PreTrainedTokenizerBase, make_classifier) -> None:
    teacher = make_classifier(tokenizer, layers=4)
    student = make_student(teacher, StudentConfig(num_layers=2))
    student.model.set_attn_implementation("eager")
    assert teacher.model.config._attn_implementation != "eager"
    out = student.model(**student.encode(["good"]), output_attentions=True)
    assert len(out.attentions) == 2


def test_random_student_has_teacher_shape_and_fresh_weights(tiny_bert_classifier: LoadedModel) -> None:
    student = make_student(tiny_bert_classifier, StudentConfig(init="random", num_layers=1))
    assert student.model.config.num_hidden_layers == 1
    a = student.model.bert.embeddings.word_embeddings.weight
    b = tiny_bert_classifier.model.bert.embeddings.word_embeddings.weight
    assert not torch.equal(a, b)
    assert student.manifest.method == "student:random"


def test_pretrained_student_gets_a_classification_head(
    tiny_bert_classifier: LoadedModel, tiny_bert_embedder: LoadedModel, tmp_path: Path
) -> None:
    folder = tmp_path / "embedder"
    save_model(tiny_bert_embedder, folder)
    student = make_student(tiny_bert_classifier, StudentConfig(init="pretrained", pretrained=str(folder)))
    assert student.task == "classification"
    assert student.manifest.labels == ["negative", "positive"]
    emb = student.model.bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(emb, tiny_bert_embedder.model.embeddings.word_embeddings.weight)
    assert student.predict(["x"]).shape == (1, 2)


def test_cut_llama_renumbers_cache_slots_and_generates(tiny_llama: LoadedModel) -> None:
    student = make_student(tiny_llama, StudentConfig(layers=(1,)))
    layers = layer_list(student.model)
    assert len(layers) == 1 and layers[0].self_attn.layer_idx == 0
    ids = student.tokenizer("hello world", return_tensors="pt")["input_ids"]
    out = student.model.generate(ids, max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape[1] == ids.shape[1] + 3


def test_bad_student_configs_are_clear_errors(tiny_bert_classifier: LoadedModel) -> None:
    with pytest.raises(InfoptError, match="do not exist"):
        cut_layers(tiny_bert_classifier.model, (0, 5))
    with pytest.raises(InfoptError, match="repeat"):
        StudentConfig(layers=(0, 0))
    with pytest.raises(InfoptError, match="init"):
        StudentConfig(init="magic")  # type: ignore[arg-type]
