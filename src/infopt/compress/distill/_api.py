"""One entry point, `distill(teacher, student, data, config)`, over every scheme and architecture."""

from __future__ import annotations

from collections.abc import Sequence

from infopt.compress.distill._causal import distill_causal
from infopt.compress.distill._configs import DistillConfig, StudentConfig
from infopt.compress.distill._early_exit import self_distill
from infopt.compress.distill._progressive import distill_chain
from infopt.compress.distill._students import make_student
from infopt.data import Splits, TextDataset, holdout
from infopt.errors import UserError
from infopt.models import LoadedModel

__all__ = ["distill"]

TeacherArg = LoadedModel | Sequence[LoadedModel]
StudentArg = LoadedModel | StudentConfig | Sequence[LoadedModel | StudentConfig] | None
DataArg = TextDataset | Splits | Sequence[str]


def _teachers(teacher: TeacherArg) -> list[LoadedModel]:
    teachers = [teacher] if isinstance(teacher, LoadedModel) else list(teacher)
    if not teachers:
        raise UserError("No teacher was given.", "pass a teacher model (or a list of teachers).")
    return teachers


def _labelled(data: DataArg, what: str) -> TextDataset:
    if isinstance(data, Splits):
        data = data.train
    if not isinstance(data, TextDataset):
        raise UserError(f"{what} needs labelled data (a TextDataset or Splits).", "load it with load_dataset.")
    if len(data) == 0:
        raise UserError("The distillation data is empty.", "give at least one labelled example.")
    return data


def distill(
    teacher: TeacherArg, student: StudentArg = None, data: DataArg = (), config: DistillConfig | None = None
) -> LoadedModel:
    """Distil `teacher` into `student` on `data`; returns the trained student (the teacher is never modified).

    - teacher: a model, or several (multi-teacher: weighted soft targets, `config.teacher_weights`).
    - student: a model, a `StudentConfig` built from the (first) teacher, None for the default config
      (every other teacher layer), or a sequence of them (progressive: teacher -> assistant -> student).
    - data: labelled `TextDataset` or `Splits` (its train split; `self` uses its validation split for the
      threshold) for classifiers, plain texts for causal LMs.
    - config: loss weights, scheme (`offline` cached teacher, `online` mutual learning, `self` early exit), budget.
    """
    config = config or DistillConfig()
    teachers = _teachers(teacher)
    if teachers[0].task == "causal-lm":
        texts = list(data.train.texts if isinstance(data, Splits) else data.texts if isinstance(data, TextDataset)
                     else data)
        if not texts:
            raise UserError("The distillation corpus is empty.", "give some text.")
        if len(teachers) > 1:
            raise UserError("Causal-LM distillation takes one teacher.", "pass a single teacher.")
        if isinstance(student, Sequence):
            raise UserError("Progressive distillation is for classifiers.", "pass a single causal-LM student.")
        s = student if isinstance(student, LoadedModel) else make_student(teachers[0], student)
        return distill_causal(teachers[0], s, texts, config)
    if config.scheme == "self":
        if student is not None or len(teachers) > 1:
            raise UserError(
                "Self-distillation makes an early-exit model of one teacher; no separate student is trained.",
                "pass student=None and one teacher.",
            )
        if isinstance(data, Splits):
            train, validation = data.train, data.validation
        else:
            train, validation = holdout(_labelled(data, "Self-distillation"), config.train.seed)
        if len(train) == 0:
            raise UserError("The distillation data is empty.", "give at least one labelled example.")
        return self_distill(teachers[0], train, validation, config)
    train_data = _labelled(data, "Distilling a classifier")
    if student is None or isinstance(student, LoadedModel | StudentConfig):
        chain: list[LoadedModel | StudentConfig] = [student or StudentConfig()]
    else:
        chain = list(student)
    return distill_chain(teachers, chain, train_data, config)[-1]
