"""Knowledge kinds beyond soft targets, each a loss term: features, relations, attention maps."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from infopt.errors import UserError

__all__ = [
    "attention_loss",
    "feature_loss",
    "head_average",
    "projections",
    "relation_loss",
    "uniform_layer_map",
]


def head_average(attention: torch.Tensor) -> torch.Tensor:
    """[B, H, T, T] attention probabilities -> [B, T, T] averaged over heads (students may have fewer heads)."""
    return attention.mean(1)


def uniform_layer_map(student_layers: int, teacher_layers: int) -> tuple[int, ...]:
    """Teacher layer (1-based) for each student layer, spread evenly so the last matches the last: 3 of 6 -> 2, 4, 6."""
    return tuple(round((i + 1) * teacher_layers / student_layers) for i in range(student_layers))


def projections(student_dim: int, teacher_dim: int, count: int, seed: int = 0) -> torch.nn.ModuleList:
    """One learned linear map from the student's hidden size to the teacher's per mapped layer (FitNets regressor)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        maps = [torch.nn.Linear(student_dim, teacher_dim) for _ in range(count)]
    if student_dim == teacher_dim:
        for m in maps:  # start at the identity: a student cut from the teacher already speaks its language
            torch.nn.init.eye_(m.weight)
            torch.nn.init.zeros_(m.bias)
    return torch.nn.ModuleList(maps)


def feature_loss(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], maps: torch.nn.ModuleList
) -> torch.Tensor:
    """Mean over mapped layers of MSE(projection(student features), teacher features); features [B, D]."""
    if not (len(student) == len(teacher) == len(maps)) or not student:
        raise UserError(
            "Feature distillation got mismatched layer lists.", "give one teacher layer per student layer."
        )
    terms = [F.mse_loss(p(s.float()), t.float().detach()) for s, t, p in zip(student, teacher, maps, strict=True)]
    return torch.stack(terms).mean()


def _pdist(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(-1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp(min=1e-12)
    d = d2.sqrt()
    return d * (1 - torch.eye(len(x), dtype=x.dtype, device=x.device))


def _angles(x: torch.Tensor) -> torch.Tensor:
    e = F.normalize(x[None, :, :] - x[:, None, :], p=2, dim=-1)  # e[i, j] = unit(x_j - x_i)
    return torch.bmm(e, e.transpose(1, 2)).reshape(-1)  # cos of angle j-i-k for every (i, j, k)


def relation_loss(student: torch.Tensor, teacher: torch.Tensor, angle_weight: float = 2.0) -> torch.Tensor:
    """Relational KD (Park et al. 2019) on [B, D] embeddings: distance term + angle_weight * angle term.

    Pairwise distances are divided by their mean, so student and teacher may differ in width and scale.
    """
    if student.shape[0] != teacher.shape[0]:
        raise UserError("Relation distillation got batches of different sizes.", "pass the same examples.")
    if student.shape[0] < 2:
        return student.sum() * 0.0
    s, t = student.float(), teacher.float().detach()
    ds, dt = _pdist(s), _pdist(t)
    off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    ds = ds / ds[off].mean().clamp(min=1e-12)
    dt = dt / dt[off].mean().clamp(min=1e-12)
    loss = F.smooth_l1_loss(ds[off], dt[off])
    if angle_weight > 0 and len(s) >= 3:
        loss = loss + angle_weight * F.smooth_l1_loss(_angles(s), _angles(t))
    return loss


def attention_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(A_T || A_S) per query row, averaged over real query tokens; maps [B, T, T], mask [B, T].

    Rows of both maps are attention distributions over keys (padding keys carry ~0 probability).
    """
    if student.shape != teacher.shape:
        raise UserError(
            f"Attention maps differ in shape: student {tuple(student.shape)}, teacher {tuple(teacher.shape)}.",
            "attention transfer needs the same tokenizer for teacher and student.",
        )
    t = teacher.float().detach()
    s = student.float()
    kl = (t * (t.clamp(min=1e-8).log() - s.clamp(min=1e-8).log())).sum(-1)  # [B, T]
    m = mask.to(kl.dtype)
    return (kl * m).sum() / m.sum().clamp(min=1.0)
