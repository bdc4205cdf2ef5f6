"""Progressive distillation: teacher -> assistant(s) -> student, each stage taught by the one before."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from infopt.compress.distill._configs import DistillConfig, StudentConfig
from infopt.compress.distill._students import make_student
from infopt.compress.distill._train import distill_classifier
from infopt.data import TextDataset
from infopt.errors import UserError
from infopt.models import LoadedModel

__all__ = ["distill_chain"]


def distill_chain(
    teachers: Sequence[LoadedModel],
    chain: Sequence[LoadedModel | StudentConfig],
    data: TextDataset,
    config: DistillConfig,
) -> list[LoadedModel]:
    """Distil along `chain`: the first stage learns from `teachers`, every later one from the stage before.

    A `StudentConfig` stage is built from the model before it (e.g. teacher-layers of the assistant). Returns
    every stage's model, the final student last. The layer map of `config`, if any, applies to the last stage.
    """
    if not chain:
        raise UserError("The progressive chain is empty.", "give at least one student.")
    if config.scheme == "online" and len(chain) > 1:
        raise UserError("Progressive distillation runs offline.", "use scheme='offline' for a chain.")
    previous: Sequence[LoadedModel] = teachers
    out: list[LoadedModel] = []
    for k, stage in enumerate(chain):
        last = k == len(chain) - 1
        cfg = dataclasses.replace(
            config,
            layer_map=config.layer_map if last else None,
            teacher_weights=config.teacher_weights if k == 0 else None,  # later stages have one teacher
        )
        student = stage if isinstance(stage, LoadedModel) else make_student(previous[0], stage)
        student, _ = distill_classifier(previous, student, data, cfg, desc=f"distil stage {k + 1}/{len(chain)}")
        out.append(student)
        previous = [student]
    return out
