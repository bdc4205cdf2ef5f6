"""Expected calibration error and temperature scaling."""

from __future__ import annotations

import pytest
import torch

from infopt.data import TextDataset
from infopt.errors import InfoptError
from infopt.evaluate import apply_temperature, calibration_report, expected_calibration_error, fit_temperature
from infopt.models import LoadedModel


def _sampled(logits: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=g).view(-1)


def test_ece_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]]))
    labels = torch.tensor([0, 1, 0, 0])
    # bin 0.9: accuracy 0.5, confidence 0.9 -> 0.4 * 0.5; bin 0.6: accuracy 1.0, confidence 0.6 -> 0.4 * 0.5
    assert expected_calibration_error(logits, labels) == pytest.approx(40.0, abs=1e-4)


def test_labels_drawn_from_the_model_are_calibrated_and_overconfidence_is_not() -> None:
    g = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(20000, 3, generator=g)
    labels = _sampled(logits)
    assert expected_calibration_error(logits, labels) < 1.5
    assert expected_calibration_error(3 * logits, labels) > 10


def test_temperature_scaling_recovers_the_temperature_and_fixes_ece() -> None:
    g = torch.Generator().manual_seed(1)
    true = 2 * torch.randn(20000, 4, generator=g)
    labels = _sampled(true, seed=2)
    overconfident = 2.5 * true
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(2.5, rel=0.05)
    assert expected_calibration_error(overconfident / t, labels) < expected_calibration_error(overconfident, labels) / 4


def test_apply_temperature_scales_logits_and_keeps_predictions(tiny_bert_classifier: LoadedModel) -> None:
    texts = ["a fine film", "dull", "what a ride"]
    before = tiny_bert_classifier.predict(texts)
    scaled = apply_temperature(tiny_bert_classifier, 2.0)
    torch.testing.assert_close(scaled.predict(texts), before / 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tiny_bert_classifier.predict(texts), before)  # original untouched
    assert scaled.manifest.recipe[-1] == {"stage": "temperature-scaling", "config": {"temperature": 2.0}}
    with pytest.raises(InfoptError):
        apply_temperature(tiny_bert_classifier, 0.0)


def test_calibration_report(tiny_bert_classifier: LoadedModel) -> None:
    reviews = TextDataset("r", ["a good film", "a bad film", "great", "awful"] * 8, [1, 0, 1, 0] * 8,
                          ["negative", "positive"])
    report = calibration_report(tiny_bert_classifier, reviews, reviews, max_length=16)
    assert set(report) == {"ece", "nll", "temperature", "ece_scaled", "nll_scaled"}
    assert report["nll_scaled"] <= report["nll"] + 1e-6
    assert report["temperature"] > 0


def test_empty_set_is_a_clear_error() -> None:
    with pytest.raises(InfoptError):
        expected_calibration_error(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
