"""SmoothQuant for dynamic int8: move activation outliers into the weights before the export.

ONNX Runtime's dynamic int8 MatMul gives the whole input tensor one scale, set by its largest channel. In BERT the
LayerNorm and GELU outputs have a few channels 10-30x larger than the median, so most channels get only a few
int8 levels. A smoothed nn.Linear computes `x -> (x / s) @ (W * s)^T`, exact in float32, with per-input-channel
`s_j = max|x_j|^alpha / max|W[:, j]|^(1 - alpha)` from calibration texts (Xiao et al., 2023). Scaling weight
columns makes the per-row weight quantization coarser, so alpha is chosen by simulating the int8 model on the
calibration texts: per alpha, layers whose own error it raises stay unsmoothed, and the plan with the smallest error
at the model's output wins (on MiniLM-L6, picking each layer's alpha by its own error was 1.5 dB worse).
The export carries one Mul per smoothed layer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from infopt.compress.quantize._modules import linear_layers
from infopt.models import forward_hooks, set_submodule

__all__ = ["SmoothedLinear", "fake_dynamic_int8", "input_absmax", "smooth_linears"]

_FLOOR = 1e-5
BATCH = 32
"""Calibration batch size besides batch 1 (`infopt optimize` scores in batches of 32)."""
SCORED = 24
"""Calibration texts on which the alphas are scored (all of them set the ranges); each scoring pass costs a forward."""


class SmoothedLinear(nn.Module):
    """An nn.Linear whose input channels are divided by `scale` and whose weight columns are multiplied by it."""

    inv_scale: torch.Tensor

    def __init__(self, linear: nn.Linear, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("inv_scale", (1 / scale).to(linear.weight.dtype))
        with torch.no_grad():
            linear.weight.mul_(scale.to(linear.weight.dtype))  # [out, in] * [in]
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inv_scale)


def _fake_uint8(x: torch.Tensor) -> torch.Tensor:
    """x through ONNX Runtime's DynamicQuantizeLinear (uint8, one scale and zero point per tensor) and back."""
    lo, hi = x.min().clamp(max=0), x.max().clamp(min=0)
    scale = ((hi - lo) / 255).clamp(min=1e-12)
    zero = torch.round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


def _fake_int8_rows(w: torch.Tensor, qmax: int) -> torch.Tensor:
    """w [out, in] through symmetric int8 in [-qmax, qmax] with one scale per output row, and back."""
    scale = (w.abs().amax(1, keepdim=True) / qmax).clamp(min=1e-12)
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


def fake_dynamic_int8(x: torch.Tensor, weight: torch.Tensor, weight_max: int = 64) -> torch.Tensor:
    """x [T, in] @ weight [out, in]^T as ONNX Runtime's dynamic int8 MatMul computes it without int16 saturation
    (weight_max 64: reduce_range; 127: full range, which saturates on CPUs without VNNI)."""
    return _fake_uint8(x) @ _fake_int8_rows(weight, weight_max).T


def _calls(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[dict[str, torch.Tensor]]:
    """Each text alone, then the texts in padded batches: one activation scale covers a whole call, and padding
    tokens have outliers of their own, so calibration sees both shapes."""
    groups = [[t] for t in texts] + [list(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
    return [dict(tokenizer(g, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))
            for g in groups]


def _outputs(model: nn.Module, calls: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """The model's first output (logits, hidden states) for each call."""
    accepted = set(inspect.signature(model.forward).parameters)
    with torch.no_grad():
        return [model(**{k: v for k, v in enc.items() if k in accepted})[0] for enc in calls]


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.detach().reshape(-1, x.shape[-1])


def input_absmax(model: nn.Module, calls: list[dict[str, torch.Tensor]],
                 names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per-channel max |input| [in_features] of each named module over the calls."""
    stats: dict[str, torch.Tensor] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            amax = _rows(inputs[0]).abs().amax(0)
            stats[name] = torch.maximum(stats[name], amax) if name in stats else amax

        return hook

    with forward_hooks([(model.get_submodule(n), record(n)) for n in names]):
        _outputs(model, calls)
    return stats


Option = tuple[torch.Tensor, torch.Tensor]
"""(per-input-channel scale s [in], W * s through int8 and back [out, in])."""


def _local_errors(model: nn.Module, calls: list[dict[str, torch.Tensor]], layers: dict[str, nn.Linear],
                  options: dict[str, dict[float | None, Option]]) -> dict[str, dict[float | None, float]]:
    """Squared error of each layer's simulated int8 output, per option, with float inputs."""
    errors: dict[str, dict[float | None, float]] = {n: dict.fromkeys(opts, 0.0) for n, opts in options.items()}

    def score(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = _rows(inputs[0])
            exact = x @ layers[name].weight.T
            for key, (s, wq) in options[name].items():
                errors[name][key] += float((_fake_uint8(x / s) @ wq.T - exact).pow(2).sum())

        return hook

    with forward_hooks([(model.get_submodule(n), score(n)) for n in options]):
        _outputs(model, calls)
    return errors


def _end_to_end_error(model: nn.Module, calls: list[dict[str, torch.Tensor]], layers: dict[str, nn.Linear],
                      plan: dict[str, Option], reference: list[torch.Tensor]) -> float:
    """Relative squared error of the model's outputs when every planned layer runs in simulated int8."""

    def simulate(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]:
        s, wq = plan[name]
        bias = layers[name].bias

        def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            y = _fake_uint8(_rows(inputs[0]) / s) @ wq.T
            return (y if bias is None else y + bias).reshape(output.shape)

        return hook

    with forward_hooks(post=[(model.get_submodule(n), simulate(n)) for n in plan]):
        outputs = _outputs(model, calls)
    noise = sum(float((o - r).pow(2).sum()) for o, r in zip(outputs, reference, strict=True))
    return noise / max(sum(float(r.pow(2).sum()) for r in reference), 1e-30)


def _scales(amax: torch.Tensor, weight: torch.Tensor, alphas: Sequence[float]) -> Iterator[tuple[float, torch.Tensor]]:
    wmax = weight.abs().amax(0).clamp(min=_FLOOR)
    for alpha in alphas:
        yield alpha, (amax.clamp(min=_FLOOR).pow(alpha) / wmax.pow(1 - alpha)).clamp(min=_FLOOR)


def smooth_linears(model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                   alphas: Sequence[float], exclude: tuple[str, ...], max_length: int,
                   weight_max: int = 64) -> dict[str, float | None]:
    """Smooth the nn.Linear layers not excluded, in place; returns name -> alpha (None: left alone).

    For each alpha, layers whose own simulated int8 error it does not lower stay unsmoothed; of these plans (and
    smoothing nothing) the one with the smallest simulated error at the model's output wins. `weight_max` is the
    largest int8 weight code (64 with ORT's reduce_range, else 127)."""
    layers = dict(linear_layers(model.eval(), exclude))
    amax = input_absmax(model, _calls(tokenizer, texts, max_length), list(layers))
    calls = _calls(tokenizer, texts[:SCORED], max_length)
    reference = _outputs(model, calls)
    options: dict[str, dict[float | None, Option]] = {}
    for name, a in amax.items():
        w = layers[name].weight.detach()
        options[name] = {None: (torch.ones_like(a), _fake_int8_rows(w, weight_max))}
        options[name].update({alpha: (s, _fake_int8_rows(w * s, weight_max)) for alpha, s in _scales(a, w, alphas)})
    local = _local_errors(model, calls, layers, options)
    plans = {
        alpha: {n: alpha if alpha is not None and err[alpha] < err[None] else None for n, err in local.items()}
        for alpha in (None, *alphas)
    }
    errors = {
        alpha: _end_to_end_error(model, calls, layers, {n: options[n][a] for n, a in plan.items()}, reference)
        for alpha, plan in plans.items()
    }
    best = plans[min(errors, key=lambda a: errors[a])]
    for name, alpha in best.items():
        if alpha is not None:
            set_submodule(model, name, SmoothedLinear(layers[name], options[name][alpha][0]))
    return best
