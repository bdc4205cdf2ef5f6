"""Token-level distillation of a causal LM into a shallower one (e.g. SmolLM2-135M, 30 -> 15 layers).

The teacher runs frozen on every batch: vocabulary-sized logits for every token are too large to cache.
"""

from __future__ import annotations

import dataclasses
import math
import random

import torch

from infopt.compress.distill._configs import DistillConfig
from infopt.compress.distill._loss import response_kd_loss
from infopt.data import token_blocks as cut_blocks
from infopt.errors import NotApplicable, UserError
from infopt.models import LoadedModel, fingerprint_model
from infopt.train import AdamWSchedule, optimizer_steps, refilled_batches

__all__ = ["distill_causal", "token_blocks"]


def token_blocks(model: LoadedModel, texts: list[str], block: int, count: int, seed: int = 0) -> torch.Tensor:
    """[count, block] token ids cut from `texts` (shuffled with `seed`, joined with EOS); fewer if texts run out."""
    return cut_blocks(model.tokenizer, texts, block, count, seed)


def _check(teacher: LoadedModel, student: LoadedModel) -> None:
    for m, role in ((teacher, "teacher"), (student, "student")):
        if m.task != "causal-lm" or not isinstance(m.model, torch.nn.Module):
            raise UserError(
                f"The {role} {m.manifest.name} is not a PyTorch causal LM ({m.task}).",
                "distil causal LMs into causal LMs.",
            )
    tv, sv = teacher.model.config.vocab_size, student.model.config.vocab_size
    if tv != sv or teacher.tokenizer.get_vocab() != student.tokenizer.get_vocab():
        raise UserError(
            f"Teacher and student have different vocabularies ({tv} vs {sv} tokens).",
            "token-level distillation needs a student with the teacher's tokenizer (e.g. one cut from its layers).",
        )


def distill_causal(
    teacher: LoadedModel, student: LoadedModel, texts: list[str], config: DistillConfig, desc: str = "distil LM"
) -> LoadedModel:
    """Train `student` in place on next-token soft targets of `teacher` over `texts`; returns it.

    Blocks of `config.train.max_length` tokens, `config.train.batch_size` blocks per step, for `config.max_steps`
    steps (else `train.epochs` passes over the blocks the texts give). Loss per token: response_kd_loss.
    """
    if config.scheme != "offline":
        raise NotApplicable(
            f"The {config.scheme} scheme is not available for causal LMs.", "use the default offline scheme."
        )
    if not texts:
        raise UserError("The distillation corpus is empty.", "give some text.")
    _check(teacher, student)
    tc = config.train
    bs, block = tc.batch_size, tc.max_length
    if config.max_steps is not None:
        steps = config.max_steps
        blocks = token_blocks(teacher, texts, block, steps * bs, tc.seed)
    else:
        blocks = token_blocks(teacher, texts, block, 10**9, tc.seed)
        steps = max(1, round(math.ceil(len(blocks) / bs) * tc.epochs))
    if len(blocks) == 0:
        raise UserError(f"The corpus has fewer than {block} tokens.", "give more text or a shorter max_length.")
    torch.manual_seed(tc.seed)
    params = [p for p in student.model.parameters() if p.requires_grad]
    teacher.model.eval()
    student.model.train()
    rng = random.Random(tc.seed)

    def shuffled() -> list[int]:
        more = list(range(len(blocks)))
        rng.shuffle(more)
        return more

    def step(idx: list[int]) -> torch.Tensor:
        ids = blocks[idx]
        with torch.inference_mode():
            t_logits = teacher.model(input_ids=ids).logits.float()
        s_logits = student.model(input_ids=ids).logits
        t_next = t_logits[:, :-1].clone()  # out of inference mode
        return response_kd_loss(s_logits[:, :-1], t_next, ids[:, 1:], config.temperature, config.alpha)

    optimizer_steps(params, steps, AdamWSchedule.of(tc), refilled_batches(bs, shuffled), step, desc)
    student.model.eval()
    recipe = {
        "teachers": [teacher.manifest.name],
        "teacher_fingerprints": [teacher.manifest.fingerprint or fingerprint_model(teacher)],
        "scheme": "offline-live-teacher",
        "temperature": config.temperature,
        "alpha": config.alpha,
        "steps": steps,
        "blocks_seen": steps * bs,
        **vars(tc),
    }
    student.manifest = dataclasses.replace(
        student.manifest,
        method="distill:token-level",
        recipe=[*student.manifest.recipe, {"stage": "distill", "config": recipe}],
    )
    return student
