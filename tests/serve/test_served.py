"""ServedModel tokenizes each text once: the batch it builds from those tokens is the tokenizer's own batch."""

from __future__ import annotations

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
