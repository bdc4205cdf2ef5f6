"""Response-based distillation loss (Hinton et al.): soft targets at temperature T plus hard labels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from infopt.errors import UserError


def check_temperature(temperature: float) -> None:
    """Raise InfoptError unless temperature is a finite number > 0."""
    if not (isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0):
        raise UserError(
            f"Distillation temperature must be > 0, got {temperature!r}.",
            "pass a positive temperature such as 4.0 (1.0 means no softening).",
        )


def check_alpha(alpha: float, name: str = "alpha") -> None:
    """Raise InfoptError unless alpha is a finite number in [0, 1]."""
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise UserError(
            f"Distillation {name} must be in [0, 1], got {alpha!r}.",
            f"pass {name} between 0 (hard labels only) and 1 (soft targets only), e.g. 0.5.",
        )


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(P_T || P_S) with P = softmax(z / T), batch-mean over rows (all leading dims flattened)."""
    check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape:
        raise UserError(
            f"Student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape.",
            "distil between models with the same label set (same num_labels / vocabulary).",
        )
    n = student_logits.shape[-1]
    s = student_logits.reshape(-1, n).float()
    t = teacher_logits.reshape(-1, n).float().detach()
    log_ps = F.log_softmax(s / temperature, dim=-1)
    log_pt = F.log_softmax(t / temperature, dim=-1)
    kl = F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True)
    return kl * (temperature**2)


def response_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float = 4.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """L = alpha * T^2 * KL(P_T || P_S) + (1 - alpha) * CE(y, softmax(z_S)), P = softmax(z / T), KL batch-mean.

    ``labels`` may be None only when alpha == 1 (pure soft targets). Label value -100 is ignored by
    the CE term (as in HF), so the same function serves token-level causal-LM distillation.
    """
    check_temperature(temperature)
    check_alpha(alpha)
    loss = alpha * soft_kl(student_logits, teacher_logits, temperature) if alpha > 0 else None
    if alpha < 1:
        if labels is None:
            raise UserError(
                "response_kd_loss got no labels but alpha < 1 needs the hard-label term.",
                "pass labels, or alpha=1.0 for soft targets only.",
            )
        n = student_logits.shape[-1]
        ce = F.cross_entropy(student_logits.reshape(-1, n).float(), labels.reshape(-1).long(), ignore_index=-100)
        hard = (1.0 - alpha) * ce
        loss = hard if loss is None else loss + hard
    assert loss is not None
    return loss
