"""ServedModel tokenizes each text once: the batch it builds from those tokens is the tokenizer's own batch."""

from __future__ import annotations

import asyncio
import copy

import pytest
import torch

from infopt.models import LoadedModel
from infopt.serve._config import BatchingConfig
from infopt.serve._errors import RequestError
from infopt.serve._served import ServedModel

TEXTS = ["a tender, funny film", "no", "the plot drags on and on, and then it drags some more before the end"]


@pytest.mark.parametrize("side", ["right", "left"])
def test_collate_equals_the_tokenizers_padded_batch(tiny_bert_classifier: LoadedModel, side: str) -> None:
    tokenizer = copy.deepcopy(tiny_bert_classifier.tokenizer)
    tokenizer.padding_side = side
    served = ServedModel("clf", LoadedModel(tiny_bert_classifier.model, tokenizer, tiny_bert_classifier.manifest),
                         BatchingConfig())
    batch = served.collate(served.check("classification", TEXTS, truncate=False))
    expected = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert batch.keys() == expected.keys()
    for key in expected:
        assert torch.equal(batch[key], expected[key]), key


def test_outputs_equal_predict_and_truncation_cuts_to_the_limit(tiny_bert_classifier: LoadedModel) -> None:
    served = ServedModel("clf", tiny_bert_classifier, BatchingConfig())
    long = " ".join(["word"] * (served.max_tokens + 20))
    with pytest.raises(RequestError, match="takes at most"):
        served.check("classification", [TEXTS[0], long], truncate=False)
    encoded = served.check("classification", [*TEXTS, long], truncate=True)
    assert [len(e["input_ids"]) for e in encoded][-1] == served.max_tokens
    got = torch.tensor(served._run(encoded))
    want = torch.softmax(tiny_bert_classifier.predict([*TEXTS, long], max_length=served.max_tokens), -1)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_bert_classifier", "tiny_bert_embedder"])
def test_packed_batches_give_the_padded_outputs(fixture: str, request: pytest.FixtureRequest) -> None:
    model: LoadedModel = request.getfixturevalue(fixture)
    task = model.task
    packed, padded = ServedModel("m", model, BatchingConfig()), ServedModel("m", model, BatchingConfig(packing=False))
    assert packed.probe_packing() and not padded.probe_packing()
    assert packed.info()["packing"] and not padded.info()["packing"]
    encoded = packed.check(task, TEXTS, truncate=False)
    assert torch.allclose(torch.tensor(packed._run(encoded)), torch.tensor(padded._run(encoded)), atol=1e-5)


def _batch_sizes(model: LoadedModel, texts: list[str], batching: BatchingConfig) -> list[int]:
    """The sizes of the batches a ServedModel runs when each text comes in its own request, all at once."""
    seen: list[int] = []

    class Seen:
        def queue_depth(self, model: str, depth: int) -> None: ...
        def queue_wait(self, model: str, seconds: float) -> None: ...
        def batch(self, model: str, size: int, seconds: float) -> None:
            seen.append(size)

    served = ServedModel("clf", model, batching, observer=Seen())

    async def main() -> None:
        served.start()
        await served.infer(served.check(model.task, ["warm-up: the probe runs first"], False))
        seen.clear()
        await asyncio.gather(*(served.infer(served.check(model.task, [t], False)) for t in texts))
        await served.drain()

    asyncio.run(main())
    return seen


def test_a_packing_model_batches_texts_of_any_length_together(tiny_bert_classifier: LoadedModel) -> None:
    texts = ["ok"] * 6 + [" ".join(["word"] * 100)] * 6  # the padding of one group: 6 x 98 tokens, over budget
    assert _batch_sizes(tiny_bert_classifier, texts, BatchingConfig(max_wait_ms=200)) == [12]
    assert sorted(_batch_sizes(tiny_bert_classifier, texts, BatchingConfig(max_wait_ms=200, packing=False))) == [6, 6]


def test_a_lone_batch_gets_all_threads_and_concurrent_ones_their_share(tiny_bert_classifier: LoadedModel) -> None:
    from infopt.compress.quantize import quantize

    onnx = quantize(tiny_bert_classifier, "onnx-fp32")
    onnx.model = onnx.model.with_threads(2)
    served = ServedModel("clf", onnx, BatchingConfig(workers=2))
    assert served.workers == 2 and served._narrow.model.threads == 1 and served.loaded.model.threads == 2
    used: list[int] = []

    def spy(model: LoadedModel) -> None:
        real = model.forward

        def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            used.append(model.model.threads)
            return real(batch)

        model.forward = forward  # type: ignore[method-assign]

    spy(served.loaded)
    spy(served._narrow)
    encoded = served.check("classification", TEXTS, truncate=False)
    alone = served._run(encoded)
    served.batcher._running.update({0: [], 1: []})  # this batch and another one are running
    shared = served._run(encoded)
    assert used == [2, 1] and torch.allclose(torch.tensor(alone), torch.tensor(shared), atol=1e-5)
