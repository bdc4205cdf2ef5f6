"""Prompt-lookup drafts for speculative decoding: the tokens that followed the last occurrence of the sequence's
own suffix n-gram earlier in the sequence (prompt or output). The target model checks them all in one pass."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["accept_greedy", "propose_ngram"]


def propose_ngram(token_ids: Sequence[int], ngram_sizes: Sequence[int], k: int) -> list[int]:
    """Up to `k` draft tokens: find the last n tokens (n from `ngram_sizes`, in order) earlier in `token_ids` and
    propose what came after the latest earlier match; [] when none matches."""
    if k <= 0:
        return []
    total = len(token_ids)
    for n in ngram_sizes:
        if total <= n:
            continue
        suffix = list(token_ids[total - n:])
        for start in range(total - n - 1, -1, -1):  # latest earlier occurrence first
            if list(token_ids[start:start + n]) == suffix:
                return list(token_ids[start + n:start + n + k])
    return []


def accept_greedy(drafts: Sequence[int], targets: Sequence[int]) -> list[int]:
    """The tokens a greedy target keeps: the drafts up to the first one it disagrees with, then its own token
    there (`targets` has one more entry than `drafts`: the target's choice after each fed token)."""
    out: list[int] = []
    for draft, target in zip(drafts, targets, strict=False):
        out.append(target)
        if draft != target:
            return out
    out.append(targets[len(drafts)])
    return out
