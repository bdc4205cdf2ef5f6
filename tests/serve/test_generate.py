"""The token loop without HTTP: incremental detokenization, stop strings, token picking, models without a cache."""

from __future__ import annotations

from typing import Any

import torch

from infopt.serve import Sampling, run_generation
from infopt.serve._generate import Detokenizer, pick_token


class Bytes:
    """A tokenizer whose tokens are UTF-8 bytes (an incomplete character decodes to U+FFFD); 0 is special."""

    eos_token_id = None

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(i for i in ids if i).decode("utf-8", errors="replace")


def feed(detok: Detokenizer, text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [detok.add(b) for b in data]


def test_detokenizer_holds_back_partial_characters() -> None:
    d = Detokenizer(Bytes())  # type: ignore[arg-type]
    assert feed(d, "aé") == ["a", "", "é"]  # é is two bytes: nothing until both came
    assert d.add(0) == "" and feed(d, "b") == ["b"]  # a skipped special token adds nothing
    assert d.text == "aéb"


def test_detokenizer_stop_strings() -> None:
    d = Detokenizer(Bytes(), stop=["cd", "xyz"])  # type: ignore[arg-type]
    assert feed(d, "abc") == ["a", "b", ""]  # "c" may begin "cd": held back
    assert feed(d, "e") == ["ce"] and not d.stopped  # it did not
    assert feed(d, "xyc") == ["", "", "xy"]  # "x", "xy" may begin "xyz"; "xyc" may not ("c" is held again)
    assert d.add(ord("d")) == "" and d.stopped and d.text == "abcexy"
    assert d.flush() == ""
    held = Detokenizer(Bytes(), stop=["cd"])  # type: ignore[arg-type]
    assert feed(held, "abc") == ["a", "b", ""] and held.flush() == "c"  # the end releases the held tail
    first = Detokenizer(Bytes(), stop=["bc", "abcd"])  # type: ignore[arg-type]
    assert "".join(feed(first, "abc")) == "a" and first.stopped  # the earliest stop string wins


def test_pick_token() -> None:
    logits = torch.tensor([0.0, 3.0, 2.9, -1.0])
    assert pick_token(logits, Sampling(1, temperature=0), None) == 1
    g = torch.Generator()
    assert {pick_token(logits, Sampling(1, top_p=1e-6), g.manual_seed(i)) for i in range(20)} == {1}
    assert {pick_token(logits, Sampling(1, top_p=0.9), g.manual_seed(i)) for i in range(50)} == {1, 2}
    draws = [[pick_token(logits, Sampling(1), g.manual_seed(s)) for s in range(30)] for _ in range(2)]
    assert draws[0] == draws[1] and len(set(draws[0])) > 1


class Sink:
    def __init__(self, cancel_after: int = 10**9) -> None:
        self.tokens, self.reason, self.cancel_after = 0, "", cancel_after
        self.texts: list[str] = []

    @property
    def cancelled(self) -> bool:
        return self.tokens >= self.cancel_after

    def token(self) -> None:
        self.tokens += 1

    def emit(self, text: str) -> None:
        self.texts.append(text)

    def finish(self, reason: str) -> None:
        self.reason = reason


class NextByte(torch.nn.Module):
    """No KV cache: predicts the byte after the last one it sees, and records the lengths it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def forward(self, input_ids: torch.Tensor, **_: Any) -> dict[str, torch.Tensor]:
        self.seen.append(int(input_ids.shape[1]))
        logits = torch.full((1, input_ids.shape[1], 256), -1e9)
        logits[0, -1, (int(input_ids[0, -1]) + 1) % 256] = 0
        return {"logits": logits}


def test_run_generation_without_cache_stop_and_cancel() -> None:
    model, sink = NextByte(), Sink()
    run_generation(model, Bytes(), list(b"a"), Sampling(5, temperature=0), sink)  # type: ignore[arg-type]
    assert "".join(sink.texts) == "bcdef" and sink.reason == "length" and sink.tokens == 5
    assert model.seen == [1, 2, 3, 4, 5]  # without a cache it reads the whole sequence each step
    sink = Sink()
    run_generation(NextByte(), Bytes(), list(b"a"), Sampling(9, temperature=0, stop=("de",)), sink)  # type: ignore[arg-type]
    assert "".join(sink.texts) == "bc" and sink.reason == "stop" and sink.tokens == 4
    sink = Sink()
    run_generation(NextByte(), Bytes(), list(b"a"), Sampling(9, temperature=0), sink, frozenset({ord("d")}))  # type: ignore[arg-type]
    assert "".join(sink.texts) == "bc" and sink.reason == "stop" and sink.tokens == 3  # the end token counts
    sink = Sink(cancel_after=2)
    run_generation(NextByte(), Bytes(), list(b"a"), Sampling(9, temperature=0), sink)  # type: ignore[arg-type]
    assert "".join(sink.texts) == "bc" and sink.reason == "cancelled"
