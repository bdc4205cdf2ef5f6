"""Response-based distillation loss (Hinton et al.): soft targets at temperature T plus hard labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from infopt._config import check_number
from infopt.errors import UserError


def check_temperature(temperature: float, owner: object = "Distillation") -> None:
    """Raise UserError unless temperature is a finite number > 0 (`owner`: the config, or a name for messages)."""
    check_number(owner, "temperature", temperature, low=0, bounds="(]",
                 allowed="a positive number such as 4.0 (1.0 means no softening)")


def check_alpha(alpha: float, name: str = "alpha", owner: object = "Distillation") -> None:
    """Raise UserError unless alpha is a finite number in [0, 1] (`owner`: the config, or a name for messages)."""
    check_number(owner, name, alpha, low=0, high=1,
                 allowed="a number in [0, 1]: 0 for hard labels only, 1 for soft targets only, e.g. 0.5")


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
    terms: list[torch.Tensor] = []  # alpha in [0, 1]: the soft term, the hard one, or both
    if alpha > 0:
        terms.append(alpha * soft_kl(student_logits, teacher_logits, temperature))
    if alpha < 1:
        if labels is None:
            raise UserError(
                "response_kd_loss got no labels but alpha < 1 needs the hard-label term.",
                "pass labels, or alpha=1.0 for soft targets only.",
            )
        n = student_logits.shape[-1]
        ce = F.cross_entropy(student_logits.reshape(-1, n).float(), labels.reshape(-1).long(), ignore_index=-100)
        terms.append((1.0 - alpha) * ce)
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]
