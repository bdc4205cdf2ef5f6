"""Distil classifiers: response, feature, relation and attention terms; offline (cached) or online teacher."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any, cast

import torch

from infopt.compress.distill._cache import TeacherOutputs, teacher_outputs
from infopt.compress.distill._configs import DistillConfig
from infopt.compress.distill._kinds import (
    attention_loss,
    feature_loss,
    head_average,
    projections,
    relation_loss,
    uniform_layer_map,
)
from infopt.compress.distill._loss import response_kd_loss
from infopt.compress.distill._multi import column_order, label_names, mix_soft_targets, normalised_weights
from infopt.compress.distill._online import OnlineTeacher
from infopt.compress.distill._students import num_layers, student_layers
from infopt.data import TextDataset
from infopt.errors import NotApplicable, UserError
from infopt.models import LoadedModel, fingerprint_model, masked_mean
from infopt.train import finetune

__all__ = ["distill_classifier", "layer_map_for"]


def layer_map_for(student: LoadedModel, teacher: LoadedModel, config: DistillConfig) -> tuple[int, ...]:
    """Teacher layer (1-based) matched by each student layer: the config's, the layers it was cut from, or uniform."""
    ls, lt = num_layers(student.model), num_layers(teacher.model)
    cut = student_layers(student)
    if config.layer_map is not None:
        mapping = config.layer_map
    elif cut is not None and len(cut) == ls and max(cut) < lt:
        mapping = tuple(i + 1 for i in cut)
    else:
        mapping = uniform_layer_map(ls, lt)
    if len(mapping) != ls or max(mapping) > lt:
        raise UserError(
            f"Layer map {mapping} does not fit a {ls}-layer student and a {lt}-layer teacher.",
            f"give {ls} teacher layers between 1 and {lt}.",
        )
    return tuple(mapping)


def _mask(lengths: list[int], idx: list[int], width: int, left: bool) -> torch.Tensor:
    mask = torch.zeros(len(idx), width, dtype=torch.long)
    for b, i in enumerate(idx):
        n = min(lengths[i], width)
        if left:
            mask[b, width - n :] = 1
        else:
            mask[b, :n] = 1
    return mask


def _lengths(model: LoadedModel, texts: list[str], max_length: int) -> list[int]:
    return [len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]


def _check_classifiers(teachers: Sequence[LoadedModel], student: LoadedModel) -> None:
    for m, role in [*((t, "teacher") for t in teachers), (student, "student")]:
        if m.task != "classification":
            raise UserError(
                f"The {role} {m.manifest.name} is a {m.task} model, not a classifier.",
                "distil classifiers into classifiers (causal LMs into causal LMs).",
            )
        if not isinstance(m.model, torch.nn.Module):
            raise NotApplicable(f"The {role} {m.manifest.name} is not a PyTorch model.", "use the PyTorch model.")


def _set_attn(model: Any, impl: str | None) -> str | None:
    """Switch the attention implementation (eager is needed for attention maps); returns the previous one."""
    before = getattr(model.config, "_attn_implementation", None)
    if impl is not None and before != impl:
        model.set_attn_implementation(impl)
    return before


def distill_classifier(
    teachers: Sequence[LoadedModel], student: LoadedModel, data: TextDataset, config: DistillConfig,
    desc: str = "distil",
) -> tuple[LoadedModel, LoadedModel | None]:
    """Train `student` in place from one or more `teachers` on `data`.

    Returns the student (manifest updated) and, for the online scheme, the co-trained copy of the teacher
    (the teacher passed in is never modified).
    """
    if len(data) == 0:
        raise UserError("The distillation data is empty.", "give at least one labelled example.")
    if not teachers:
        raise UserError("No teacher was given.", "pass a teacher model.")
    _check_classifiers(teachers, student)
    s_labels = label_names(student)
    if not s_labels:
        raise UserError(f"The student {student.manifest.name} has no class names.", "build it with make_student.")
    columns = [column_order(label_names(t), s_labels, f"Teacher {t.manifest.name} and the student") for t in teachers]
    data = data.aligned_to(s_labels)
    online = config.scheme == "online"
    if online and len(teachers) > 1:
        raise UserError("Online distillation takes one teacher.", "use the offline scheme for several teachers.")
    weights = normalised_weights(config.teacher_weights, len(teachers))
    primary = teachers[0]
    tcfg = config.train
    if config.max_steps is not None:
        tcfg = dataclasses.replace(tcfg, epochs=config.max_steps * tcfg.batch_size / len(data))

    mapping = layer_map_for(student, primary, config)
    lt = num_layers(primary.model)
    pooled_layers = tuple(sorted({*(mapping if config.feature else ()), *((lt,) if config.relation else ())}))
    attention_layers = tuple(sorted(set(mapping))) if config.attention else ()
    s_len = _lengths(student, data.texts, tcfg.max_length)
    if config.attention and _lengths(primary, data.texts, tcfg.max_length) != s_len:
        raise UserError(
            "Attention transfer needs teacher and student to split texts into the same tokens.",
            "use a student with the teacher's tokenizer, or set attention=0.",
        )
    s_dim, t_dim = student.model.config.hidden_size, primary.model.config.hidden_size
    maps = projections(s_dim, t_dim, len(mapping), seed=tcfg.seed) if config.feature else torch.nn.ModuleList()

    cached_logits: torch.Tensor | None = None
    cached = None
    live: OnlineTeacher | None = None
    teacher_copy: LoadedModel | None = None
    if online:
        teacher_copy = LoadedModel(copy.deepcopy(primary.model), primary.tokenizer, primary.manifest)
        live = OnlineTeacher(teacher_copy, data.texts, columns[0], tcfg.max_length, config.temperature, config.alpha)
    elif config.uses_teacher:
        outs = [
            teacher_outputs(
                t, data.texts, tcfg.max_length,
                pooled_layers if k == 0 else (), attention_layers if k == 0 else (), use_cache=config.cache,
            )
            for k, t in enumerate(teachers)
        ]
        cached = outs[0]
        aligned = [o.logits[:, cols] for o, cols in zip(outs, columns, strict=True)]
        cached_logits = aligned[0] if len(aligned) == 1 else mix_soft_targets(aligned, weights, config.temperature)

    left = student.tokenizer.padding_side == "left"
    if config.attention and left:
        raise UserError("Attention transfer assumes right padding.", "set the tokenizer's padding_side='right'.")
    s_depth = num_layers(student.model)

    def loss_fn(out: Any, labels: torch.Tensor, idx: list[int]) -> torch.Tensor:
        logits = out.logits
        if not config.uses_teacher:
            return response_kd_loss(logits, logits.detach(), labels, config.temperature, 0.0)  # plain CE
        extra: torch.Tensor | None = None
        live_maps: dict[int, list[torch.Tensor]] = {}
        if live is not None:
            t_logits, t_pooled, live_maps, extra = live(idx, logits, labels, pooled_layers, attention_layers)
        elif cached is None or cached_logits is None:
            raise TypeError("offline distillation without cached teacher outputs")
        else:
            t_logits = cached_logits[idx]
            t_pooled = {j: cached.pooled[j][idx] for j in pooled_layers}
        loss = response_kd_loss(logits, t_logits, labels, config.temperature, config.alpha)
        if not (pooled_layers or attention_layers):
            return loss if extra is None else loss + extra
        width = (out.hidden_states[0] if out.hidden_states is not None else out.attentions[0]).shape[-2]
        mask = _mask(s_len, idx, width, left)
        if config.feature:
            s_feats = [masked_mean(out.hidden_states[i + 1], mask) for i in range(s_depth)]
            loss = loss + config.feature * feature_loss(s_feats, [t_pooled[j] for j in mapping], maps)
        if config.relation:
            loss = loss + config.relation * relation_loss(masked_mean(out.hidden_states[s_depth], mask), t_pooled[lt])
        if config.attention:
            terms = []
            for i, j in enumerate(mapping):
                if live is not None:
                    t_map = torch.zeros(len(idx), width, width)
                    for b, m in enumerate(live_maps[j]):
                        t_map[b, : m.shape[0], : m.shape[0]] = m.detach().float()
                else:  # offline: `cached` was checked above
                    t_map = cast(TeacherOutputs, cached).attention_batch(j, idx, width)
                terms.append(attention_loss(head_average(out.attentions[i]), t_map, mask))
            loss = loss + config.attention * torch.stack(terms).mean()
        return loss if extra is None else loss + extra

    before = _set_attn(student.model, "eager" if config.attention else None)
    t_before = _set_attn(teacher_copy.model, "eager" if config.attention else None) if teacher_copy else None
    kwargs = {
        "output_hidden_states": bool(config.feature or config.relation),
        "output_attentions": bool(config.attention),
    }
    extra_params = [*maps.parameters(), *(live.parameters() if live else [])]
    if teacher_copy is not None:
        teacher_copy.model.train()
    try:
        finetune(
            student.model, student.tokenizer, data, tcfg, loss_fn, desc=desc,
            extra_parameters=extra_params, model_kwargs=kwargs, full_output=True,
        )
    finally:
        _set_attn(student.model, before)
        if teacher_copy is not None:
            _set_attn(teacher_copy.model, t_before)
            teacher_copy.model.eval()
    student.model.eval()
    recipe = {
        "teachers": [t.manifest.name for t in teachers],
        "teacher_fingerprints": [t.manifest.fingerprint or fingerprint_model(t) for t in teachers],
        "teacher_weights": weights,
        "data": data.name,
        "examples": len(data),
        "scheme": config.scheme,
        "temperature": config.temperature,
        "alpha": config.alpha,
        "feature": config.feature,
        "relation": config.relation,
        "attention": config.attention,
        "layer_map": list(mapping),
        **vars(tcfg),
    }
    kinds = "hard-labels" if not config.uses_teacher else config.scheme
    student.manifest = dataclasses.replace(
        student.manifest,
        method=f"distill:{kinds}",
        labels=s_labels,
        recipe=[*student.manifest.recipe, {"stage": "distill", "config": recipe}],
    )
    return student, teacher_copy
