"""Calibration: expected calibration error, and temperature scaling as the post-hoc fix."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import torch
import torch.nn.functional as F

from infopt.data import TextDataset
from infopt.errors import UserError
from infopt.evaluate._quality import predict_logits
from infopt.models import LoadedModel

__all__ = ["apply_temperature", "calibration_report", "expected_calibration_error", "fit_temperature"]


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE in percent: sum over equal-width confidence bins of |accuracy - mean confidence| * share of examples."""
    if len(labels) == 0:
        raise UserError("ECE of an empty set was asked for.", "give at least one example.")
    probs = torch.softmax(logits.float(), -1)
    conf, pred = probs.max(-1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges.tolist()):
        inside = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if inside.any():
            ece += inside.float().mean().item() * abs(correct[inside].mean().item() - conf[inside].mean().item())
    return 100 * ece


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, steps: int = 100) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017), fitted on held-out data."""
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")
    z, y = logits.float().detach(), labels.long()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.exp().item())
    return t if math.isfinite(t) and t > 0 else 1.0


def _classifier_layer(model: torch.nn.Module) -> torch.nn.Linear:
    for name in ("classifier", "score"):
        layer = getattr(model, name, None)
        if isinstance(layer, torch.nn.Linear):
            return layer
    raise UserError(
        f"Cannot find the final classifier layer of {type(model).__name__}.",
        "temperature-scale a *ForSequenceClassification model.",
    )


def apply_temperature(model: LoadedModel, temperature: float) -> LoadedModel:
    """A copy whose logits are divided by `temperature` (folded into the classifier weights; argmax unchanged)."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise UserError(f"Temperature {temperature} is not > 0.", "fit it with fit_temperature.")
    inner = copy.deepcopy(model.model)
    layer = _classifier_layer(getattr(inner, "base", inner))  # an early-exit model scales its final classifier
    with torch.no_grad():
        layer.weight.div_(temperature)
        if layer.bias is not None:
            layer.bias.div_(temperature)
    manifest = dataclasses.replace(
        model.manifest,
        recipe=[*model.manifest.recipe, {"stage": "temperature-scaling", "config": {"temperature": temperature}}],
    )
    return LoadedModel(inner, model.tokenizer, manifest)


def _logits(model: LoadedModel, data: TextDataset, max_length: int) -> torch.Tensor:
    return predict_logits(model, data.texts, max_length=max_length)


def calibration_report(
    model: LoadedModel, validation: TextDataset, test: TextDataset, max_length: int = 64
) -> dict[str, float]:
    """Test ECE and NLL before and after temperature scaling fitted on `validation`, and the fitted T."""
    labels = model.manifest.labels
    validation, test = validation.aligned_to(labels), test.aligned_to(labels)
    val_logits, test_logits = _logits(model, validation, max_length), _logits(model, test, max_length)
    y_val, y_test = torch.tensor(validation.labels), torch.tensor(test.labels)
    t = fit_temperature(val_logits, y_val)
    return {
        "ece": expected_calibration_error(test_logits, y_test),
        "nll": F.cross_entropy(test_logits.float(), y_test).item(),
        "temperature": t,
        "ece_scaled": expected_calibration_error(test_logits / t, y_test),
        "nll_scaled": F.cross_entropy(test_logits.float() / t, y_test).item(),
    }
