"""Online distillation (deep mutual learning): teacher and student learn together, each from the other."""

from __future__ import annotations

import torch

from infopt.compress.distill._cache import run_teacher
from infopt.compress.distill._loss import response_kd_loss
from infopt.models import LoadedModel

__all__ = ["OnlineTeacher"]


class OnlineTeacher:
    """Runs a trainable teacher on each batch's raw texts; its own loss learns from the student's outputs.

    Student loss: alpha * T^2 * KL(P_T || P_S) + (1 - alpha) * CE (teacher detached). Teacher loss: the same
    with the roles swapped (student detached), so one optimizer over both models updates each by its own loss.
    """

    def __init__(
        self, teacher: LoadedModel, texts: list[str], columns: list[int], max_length: int, temperature: float,
        alpha: float,
    ) -> None:
        self.teacher, self.texts, self.columns = teacher, texts, columns
        self.max_length, self.temperature, self.alpha = max_length, temperature, alpha

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.teacher.model.parameters())

    def __call__(
        self, idx: list[int], student_logits: torch.Tensor, labels: torch.Tensor, pooled: tuple[int, ...],
        attention: tuple[int, ...],
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor], dict[int, list[torch.Tensor]], torch.Tensor]:
        """Teacher logits (student label order), pooled states, attention maps, and the teacher's own loss."""
        logits, pooled_states, maps = run_teacher(
            self.teacher, [self.texts[i] for i in idx], self.max_length, pooled, attention
        )
        logits = logits[:, self.columns]
        own = response_kd_loss(logits, student_logits.detach(), labels, self.temperature, self.alpha)
        return logits.detach(), {j: p.detach() for j, p in pooled_states.items()}, maps, own
