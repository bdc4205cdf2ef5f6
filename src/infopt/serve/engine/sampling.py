"""Picking tokens from logits, per request: greedy, or repetition penalty, temperature, top-k and top-p (Hugging
Face's rules, in its order) and a draw from the request's own generator. Also the stop-string check, which needs
the caller's decode function (the engine itself sees token ids only)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from infopt.serve.engine.config import SamplingParams
from infopt.serve.engine.spec import accept_greedy

__all__ = ["SampleJob", "find_stop_string", "process_logits", "sample"]


@dataclass(frozen=True)
class SampleJob:
    """One sequence's share of a step's logits: `num_rows` rows (1, or 1 + its drafts) and what picks from them."""

    params: SamplingParams
    generator: torch.Generator | None
    history: Sequence[int]
    num_rows: int
    drafts: Sequence[int] = ()


def process_logits(logits: torch.Tensor, params: SamplingParams, history: Sequence[int]) -> torch.Tensor:
    """[V] logits -> the [V] scores the token is drawn from (greedy: its argmax): repetition penalty, then (when
    sampling) temperature, top-k and top-p, cut tokens set to -inf."""
    scores = logits.float().clone()
    if params.repetition_penalty != 1 and history:
        seen = torch.tensor(list(history), dtype=torch.long)
        picked = scores[seen]
        scores[seen] = torch.where(picked < 0, picked * params.repetition_penalty, picked / params.repetition_penalty)
    if params.greedy:
        return scores
    scores = scores / params.temperature
    if 0 < params.top_k < scores.shape[-1]:
        kth = torch.topk(scores, params.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1:
        sorted_scores, order = torch.sort(scores)  # ascending
        cut = sorted_scores.softmax(-1).cumsum(-1) <= 1 - params.top_p
        cut[-1] = False  # the most likely token always stays
        scores = scores.masked_fill(cut.scatter(0, order, cut), float("-inf"))
    return scores


def _pick(logits: torch.Tensor, job: SampleJob) -> int:
    scores = process_logits(logits, job.params, job.history)
    if job.params.greedy:
        return int(scores.argmax())
    return int(torch.multinomial(scores.softmax(-1), 1, generator=job.generator))


def sample(logits: torch.Tensor, jobs: Sequence[SampleJob]) -> list[tuple[list[int], list[float] | None]]:
    """The new tokens of each job from its rows of `logits [R, V]` (a greedy job with drafts keeps the drafts the
    target agrees with, then the target's token), with their logprobs under the raw logits when asked."""
    plain = all(j.params.greedy and j.params.repetition_penalty == 1 and not j.params.logprobs for j in jobs)
    argmax = logits.argmax(-1).tolist() if plain else None
    results: list[tuple[list[int], list[float] | None]] = []
    row = 0
    for job in jobs:
        rows = logits[row:row + job.num_rows]
        if job.drafts:
            targets = argmax[row:row + job.num_rows] if argmax is not None else rows.argmax(-1).tolist()
            tokens = accept_greedy(job.drafts, targets)
        elif argmax is not None:
            tokens = [argmax[row]]
        else:
            tokens = [_pick(rows[-1], job)]
        probs = None
        if job.params.logprobs:
            chosen = torch.tensor(tokens)
            probs = rows[:len(tokens)].float().log_softmax(-1).gather(1, chosen[:, None])[:, 0].tolist()
        results.append((tokens, probs))
        row += job.num_rows
    return results


def find_stop_string(decode: Callable[[list[int]], str], output_ids: Sequence[int],
                     stops: Sequence[str]) -> str | None:
    """The first of `stops` that the text of `output_ids` contains and that its last token completed, else None.
    Decodes a short tail only: enough tokens for the longest stop string plus the last token."""
    if not stops or not output_ids:
        return None
    window = max(len(s) for s in stops) + 1
    tail = list(output_ids[-window:])
    text = decode(tail)
    before = decode(tail[:-1])
    return next((stop for stop in stops if stop in text and stop not in before), None)
