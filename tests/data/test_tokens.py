"""joined_tokens / token_blocks: EOS between texts, the limit, the seeded order, full blocks only."""

from __future__ import annotations

import random
from typing import Any

import torch

from infopt.data import joined_tokens, token_blocks


class _Tok:
    """Each word is its length as one token id; `eos` follows every text if set."""

    def __init__(self, eos: int | None = 0) -> None:
        self.eos_token_id = eos

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        assert not add_special_tokens
        return {"input_ids": [len(w) for w in text.split()]}


def _tok(eos: int | None = 0) -> Any:
    return _Tok(eos)


TEXTS = ["a bb", "ccc", "dddd eeeee ffffff"]


def test_texts_joined_with_eos_in_order() -> None:
    assert joined_tokens(_tok(), TEXTS) == [1, 2, 0, 3, 0, 4, 5, 6, 0]
    assert joined_tokens(_tok(None), TEXTS) == [1, 2, 3, 4, 5, 6]


def test_limit_stops_after_the_text_that_reaches_it() -> None:
    assert joined_tokens(_tok(), TEXTS, limit=4) == [1, 2, 0, 3, 0]  # the last text is kept whole
    assert joined_tokens(_tok(), TEXTS, limit=3) == [1, 2, 0]


def test_seed_shuffles_the_texts() -> None:
    order = list(range(3))
    random.Random(5).shuffle(order)
    expected = [t for i in order for t in [*joined_tokens(_tok(), [TEXTS[i]])]]
    assert joined_tokens(_tok(), TEXTS, seed=5) == expected


def test_blocks_are_full_and_capped_by_count() -> None:
    blocks = token_blocks(_tok(), TEXTS, 4)
    assert blocks.dtype == torch.long
    assert blocks.tolist() == [[1, 2, 0, 3], [0, 4, 5, 6]]  # the ninth token does not fill a block
    assert token_blocks(_tok(), TEXTS, 2, count=2).tolist() == [[1, 2], [0, 3]]
    assert token_blocks(_tok(), TEXTS, 100).shape == (0, 100)
    assert token_blocks(_tok(), TEXTS, 2, count=10, seed=1).shape[0] == 4
