"""The cascade: escalation rule, risk-controlled threshold, the `cascade` folder format."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from infopt.compress.cascade import (
    ESCALATE_ALL,
    STAMP_FILE,
    CascadeModel,
    _calibrate,
    calibrate,
    choose_threshold,
    clopper_pearson_upper,
    make_cascade,
)
from infopt.compress.quantize import quantize
from infopt.data import TextDataset
from infopt.errors import UserError
from infopt.models import LoadedModel, load_model, save_model, weights_mb


@pytest.fixture
def pair(make_classifier: Callable[..., LoadedModel], tokenizer: object) -> tuple[LoadedModel, LoadedModel]:
    small = make_classifier(tokenizer, layers=1, seed=1, name="small")
    large = make_classifier(tokenizer, layers=2, seed=2, name="large")
    return small, large


TEXTS = ["a great film", "the plot is dull and the cast is flat but the story really is quite charming", "awful",
         "a wonderful, moving, funny movie", "stale"]


def test_clopper_pearson_matches_closed_forms() -> None:
    n, delta = 200, 0.1
    assert clopper_pearson_upper(0, n, delta) == pytest.approx(1 - delta ** (1 / n), rel=1e-9)
    assert clopper_pearson_upper(n, n, delta) == 1.0
    # k events: the bound p solves P(Binomial(n, p) <= k) = delta
    k = 3
    p = clopper_pearson_upper(k, n, delta)
    cdf = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))
    assert cdf == pytest.approx(delta, abs=1e-9)
    assert clopper_pearson_upper(k, n, 0.01) > p > k / n


def test_rule_escalates_exactly_the_unsure_rows(pair: tuple[LoadedModel, LoadedModel]) -> None:
    small, large = pair
    enc = small.encode(TEXTS)
    s, g = small.forward(enc), large.forward(enc)
    conf = torch.softmax(s, -1).amax(-1)
    cut = float(conf.median())
    cascade = make_cascade(small, large, cut)
    out = cascade.forward(enc)
    unsure = conf < cut
    assert 0 < int(unsure.sum()) < len(TEXTS)
    torch.testing.assert_close(out, torch.where(unsure[:, None], g, s), rtol=1e-5, atol=1e-5)
    model = cascade.model
    assert isinstance(model, CascadeModel)
    assert model.last_escalated == unsure.tolist() and model.escalated == int(unsure.sum())
    assert model.escalation_rate == pytest.approx(float(unsure.float().mean()))
    torch.testing.assert_close(make_cascade(small, large, ESCALATE_ALL).forward(enc), g, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(make_cascade(small, large, 0.0).forward(enc), s)
    model.reset_counts()
    assert (model.rows, model.escalated, model.escalation_rate) == (0, 0, 0.0)


def test_escalated_rows_lose_the_padding_they_do_not_need(pair: tuple[LoadedModel, LoadedModel]) -> None:
    small, large = pair
    cascade = make_cascade(small, large, ESCALATE_ALL)
    calls: list[int] = []
    inner = large.model.forward
    large.model.forward = lambda **kw: (calls.append(kw["input_ids"].shape[1]), inner(**kw))[1]  # type: ignore
    enc = small.encode(TEXTS)
    short = torch.tensor([i for i, t in enumerate(TEXTS) if len(t) < 20])
    cascade.model.small.forward = lambda batch: torch.tensor([[0.0, 9.0]] * len(batch["input_ids"])).index_copy(
        0, short, torch.zeros(len(short), 2))  # only the short texts are unsure
    cascade.model.threshold = 0.9
    out = cascade.forward(enc)
    assert calls[-1] < enc["input_ids"].shape[1]
    alone = large.forward(large.encode([TEXTS[i] for i in short.tolist()]))
    torch.testing.assert_close(out[short], alone, rtol=1e-4, atol=1e-5)


def test_models_must_agree(make_classifier: Callable[..., LoadedModel], tokenizer: object,
                           foreign_tok: object, tiny_bert_embedder: LoadedModel) -> None:
    large = make_classifier(tokenizer, name="large")
    with pytest.raises(UserError, match="different labels"):
        make_cascade(make_classifier(tokenizer, labels=("a", "b")), large, 0.9)
    with pytest.raises(UserError, match="different tokenizers"):
        make_cascade(make_classifier(foreign_tok), large, 0.9)
    with pytest.raises(UserError, match="embedding"):
        make_cascade(tiny_bert_embedder, large, 0.9)


def _logits(conf: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Two-class logits whose top class is `pred` with probability `conf`."""
    z = torch.log(conf / (1 - conf))
    return torch.stack([torch.where(pred == 0, z, -z) / 2, torch.where(pred == 1, z, -z) / 2], -1)


def test_threshold_is_the_least_escalating_one_the_bound_allows() -> None:
    n = 2000
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (n,), generator=g)
    conf = 0.5 + 0.5 * torch.rand(n, generator=g).clamp(max=0.999)
    small_pred = torch.where(conf < 0.7, 1 - labels, labels)  # wrong exactly below 0.7
    choice = choose_threshold(_logits(conf, small_pred), _logits(torch.full((n,), 0.9), labels), labels,
                              max_drop=1.0, delta=0.1)
    assert choice.passed and choice.n == n
    # the bound lets through at most ~11 harmful rows of 2000 (CP(11) < 1 % < CP(12)): the cut sits just above
    # the largest confidence whose harmful count still passes
    assert 0.69 <= choice.threshold <= 0.7
    assert choice.harmful <= 11 and choice.drop_bound <= 1.0
    assert choice.escalation_rate == pytest.approx(float((conf < choice.threshold).float().mean()))
    assert choice.large_accuracy == 100.0 and choice.accuracy == pytest.approx(100 - 100 * choice.harmful / n)
    tight = choose_threshold(_logits(conf, small_pred), _logits(torch.full((n,), 0.9), labels), labels,
                             max_drop=0.01, delta=0.1)  # below even CP(0 of 2000) = 0.115 %
    assert not tight.passed and tight.threshold == ESCALATE_ALL and tight.escalation_rate == 1.0
    with pytest.raises(UserError, match="max_drop"):
        choose_threshold(_logits(conf, small_pred), _logits(conf, labels), labels, max_drop=0.0)
    with pytest.raises(UserError, match="delta"):
        choose_threshold(_logits(conf, small_pred), _logits(conf, labels), labels, max_drop=1.0, delta=1.0)


def _failures(trials: int = 60, n: int = 600, max_drop: float = 2.0, delta: float = 0.1) -> int:
    """Of `trials` validation sets drawn from one population, how many give a threshold whose true loss (on the
    whole population) exceeds max_drop."""
    g = torch.Generator().manual_seed(1)
    pop = 200_000
    conf = 0.5 + 0.5 * torch.rand(pop, generator=g).clamp(max=0.999)
    wrong = torch.rand(pop, generator=g) < 2 * (1 - conf)  # the small model errs more when unsure
    labels = torch.zeros(pop, dtype=torch.long)
    small_logits, large_logits = _logits(conf, wrong.long()), _logits(torch.full((pop,), 0.9), labels)
    failures = 0
    for _ in range(trials):
        idx = torch.randint(0, pop, (n,), generator=g)
        choice = choose_threshold(small_logits[idx], large_logits[idx], labels[idx], max_drop, delta)
        true_loss = 100 * float((wrong & (conf >= choice.threshold)).float().mean())
        failures += true_loss > max_drop
    return failures


def test_bound_holds_on_new_data_at_level_delta(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chosen threshold's true loss exceeds max_drop in at most about delta of the draws; choosing on the
    observed loss instead of its bound fails in about half of them."""
    assert _failures() <= 60 * 0.1 + 6  # binomial slack (sd ~2.3)
    monkeypatch.setattr(_calibrate, "clopper_pearson_upper", lambda k, n, delta: k / n)
    assert _failures() >= 18


def test_calibrate_on_real_models(pair: tuple[LoadedModel, LoadedModel], make_data: Callable[..., TextDataset]) -> None:
    small, large = pair
    data = make_data(60)
    choice = calibrate(small, large, data, max_drop=100.0, delta=0.1)
    assert choice.passed and choice.n == 60 and choice.escalation_rate < 1.0
    with pytest.raises(UserError):
        calibrate(small, large, data.subset([]), max_drop=1.0)


def test_folder_round_trip(pair: tuple[LoadedModel, LoadedModel], tmp_path: Path) -> None:
    small, large = pair
    enc = small.encode(TEXTS)
    conf = torch.softmax(small.forward(enc), -1).amax(-1).sort().values
    cut = float(conf[1] + conf[2]) / 2
    saved = save_model(make_cascade(small, large, cut), tmp_path / "c")
    assert {"small", "large", "cascade.json", STAMP_FILE, "config.json", "infopt.json"} <= {
        p.name for p in (tmp_path / "c").iterdir()}
    assert json.loads((tmp_path / "c" / "cascade.json").read_text())["threshold"] == cut
    loaded = load_model(tmp_path / "c")
    assert isinstance(loaded.model, CascadeModel) and loaded.manifest.format == "cascade"
    assert loaded.model.threshold == cut and loaded.manifest.fingerprint == saved.manifest.fingerprint
    torch.testing.assert_close(loaded.predict(TEXTS), saved.predict(TEXTS), rtol=1e-5, atol=1e-5)
    assert weights_mb(tmp_path / "c") == pytest.approx(  # both models' weights (and the small stamp)
        weights_mb(tmp_path / "c" / "small") + weights_mb(tmp_path / "c" / "large"), abs=0.01)
    other = save_model(make_cascade(small, large, cut / 2), tmp_path / "d")
    assert other.manifest.fingerprint != saved.manifest.fingerprint  # the threshold is part of the identity
    data = json.loads((tmp_path / "c" / "cascade.json").read_text())
    (tmp_path / "c" / "cascade.json").write_text(json.dumps({**data, "threshold": 0.2}))
    with pytest.raises(UserError, match="re-export"):
        load_model(tmp_path / "c")


def test_onnx_small_model_round_trip(tiny_teacher: LoadedModel, tmp_path: Path) -> None:
    small = quantize(tiny_teacher, "onnx-int8")
    cascade = save_model(make_cascade(small, tiny_teacher, 0.8), tmp_path / "c")
    loaded = load_model(tmp_path / "c")
    assert loaded.model.small.manifest.format == "onnx"
    torch.testing.assert_close(loaded.predict(TEXTS), cascade.predict(TEXTS), rtol=1e-4, atol=1e-4)
