"""Self-distillation into an early-exit classifier: exit heads on shallow layers, taught by the deepest one.

At inference each example stops at the first exit whose top class probability reaches the threshold (chosen
on validation data: the fewest layers run whose accuracy drop stays within `max_drop` points, with a one-sided
`confidence` bound); the rest run the full model.
Saved in the `early-exit` format (`_format.py`): a Hugging Face folder plus `exits.safetensors`; `load_model`
restores the exits and the threshold.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import statistics
from typing import Any

import torch
import torch.nn.functional as F
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import SequenceClassifierOutput

from infopt.compress.distill._cache import teacher_outputs
from infopt.compress.distill._configs import DistillConfig, EarlyExitConfig
from infopt.compress.distill._loss import response_kd_loss
from infopt.compress.distill._multi import label_names
from infopt.data import TextDataset
from infopt.errors import NotApplicable, UserError
from infopt.models import LoadedModel, masked_mean
from infopt.train import AdamWSchedule, epoch_batches, finetune, optimizer_steps

__all__ = [
    "EXITS_FILE",
    "EarlyExitClassifier",
    "ExitHead",
    "choose_threshold",
    "exit_logits_on",
    "new_heads",
    "self_distill",
    "simulate_exits",
]

EXITS_FILE = "exits.safetensors"


class ExitHead(torch.nn.Module):
    """Mean over real tokens -> dense -> tanh -> class logits (a pooler and classifier of its own)."""

    def __init__(self, hidden: int, num_labels: int) -> None:
        super().__init__()
        self.dense = torch.nn.Linear(hidden, hidden)
        self.out = torch.nn.Linear(hidden, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.dense(pooled)))


def _encoder_parts(base: Any) -> tuple[Any, Any]:
    bert = getattr(base, "bert", None)
    if bert is None or not hasattr(bert, "encoder") or not hasattr(base, "classifier"):
        raise NotApplicable(
            f"Early exit supports BERT-style classifiers, not {type(base).__name__}.",
            "self-distil a *ForSequenceClassification model with a .bert encoder (e.g. minilm-l6-rt).",
        )
    return bert, base.classifier


class EarlyExitClassifier(torch.nn.Module):
    """A BERT classifier with exit heads after some layers; `forward` stops each example at its first confident exit."""

    def __init__(self, base: Any, exit_layers: tuple[int, ...], threshold: float, heads: torch.nn.ModuleDict) -> None:
        super().__init__()
        self.base = base
        self.exit_layers = tuple(sorted(exit_layers))
        self.threshold = float(threshold)
        self.heads = heads
        self.last_exit_layers: list[int] = []
        """Layer (1-based) at which each example of the last forward call stopped."""

    @property
    def config(self) -> Any:
        return self.base.config

    @property
    def num_layers(self) -> int:
        return len(_encoder_parts(self.base)[0].encoder.layer)

    def _final(self, hidden: torch.Tensor) -> torch.Tensor:
        bert, classifier = _encoder_parts(self.base)
        return classifier(self.base.dropout(bert.pooler(hidden)))

    def _start(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, token_type_ids: Any) -> Any:
        bert, _ = _encoder_parts(self.base)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        mask4 = create_bidirectional_mask(config=self.base.config, inputs_embeds=hidden, attention_mask=attention_mask)
        return bert, hidden, mask4, attention_mask

    def all_exits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: Any = None
    ) -> list[torch.Tensor]:
        """Logits of every exit head (in layer order) and of the final classifier, all layers run."""
        bert, hidden, mask4, mask2 = self._start(input_ids, attention_mask, token_type_ids)
        outs = []
        for k, layer in enumerate(bert.encoder.layer, start=1):
            hidden = layer(hidden, mask4)
            if k in self.exit_layers:
                outs.append(self.heads[str(k)](masked_mean(hidden, mask2)))
        outs.append(self._final(hidden))
        return outs

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: Any = None,
        **_: Any,
    ) -> SequenceClassifierOutput:
        bert, hidden, mask4, mask2 = self._start(input_ids, attention_mask, token_type_ids)
        n = input_ids.shape[0]
        logits = torch.empty(n, self.base.config.num_labels, dtype=hidden.dtype)
        exit_at = [0] * n
        active = torch.arange(n)
        layers = bert.encoder.layer
        for k, layer in enumerate(layers, start=1):
            hidden = layer(hidden, mask4)
            if k in self.exit_layers and k < len(layers):
                z = self.heads[str(k)](masked_mean(hidden, mask2))
                done = torch.softmax(z.float(), -1).amax(-1) >= self.threshold
                if bool(done.any()):
                    logits[active[done]] = z[done]
                    for i in active[done].tolist():
                        exit_at[i] = k
                    keep = ~done
                    if not bool(keep.any()):
                        self.last_exit_layers = exit_at
                        return SequenceClassifierOutput(logits=logits)
                    active, hidden, mask2 = active[keep], hidden[keep], mask2[keep]
                    mask4 = mask4[keep] if mask4 is not None else None
        logits[active] = self._final(hidden)
        for i in active.tolist():
            exit_at[i] = len(layers)
        self.last_exit_layers = exit_at
        return SequenceClassifierOutput(logits=logits)


def _exit_layers(total: int, config: EarlyExitConfig) -> tuple[int, ...]:
    layers = config.exit_layers or tuple(range(1, total))
    bad = [k for k in layers if not 1 <= k < total]
    if bad:
        raise UserError(f"Exit layers {bad} are not inside a {total}-layer model.", f"use layers 1..{total - 1}.")
    return tuple(sorted(set(layers)))


def new_heads(hidden: int, num_labels: int, layers: tuple[int, ...], seed: int) -> torch.nn.ModuleDict:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.ModuleDict({str(k): ExitHead(hidden, num_labels) for k in layers})


def _train_heads_frozen(
    model: EarlyExitClassifier, teacher: LoadedModel, data: TextDataset, config: DistillConfig
) -> None:
    """Heads learn from cached pooled states of their layers and the model's own final logits (disk cache)."""
    ee = config.early_exit
    outs = teacher_outputs(teacher, data.texts, config.train.max_length, pooled_layers=model.exit_layers,
                           use_cache=config.cache)
    labels = torch.tensor(data.labels)
    bs = max(1, config.train.batch_size)
    steps = max(1, round(math.ceil(len(data) / bs) * ee.head_epochs))
    rng = random.Random(config.train.seed)
    torch.manual_seed(config.train.seed)

    def epoch() -> list[list[int]]:
        order = list(range(len(data)))
        rng.shuffle(order)
        return [order[start : start + bs] for start in range(0, len(order), bs)]

    def step(idx: list[int]) -> torch.Tensor:
        loss = sum(
            response_kd_loss(model.heads[str(k)](outs.pooled[k][idx]), outs.logits[idx], labels[idx],
                             config.temperature, config.alpha)
            for k in model.exit_layers
        )
        if not isinstance(loss, torch.Tensor):
            raise TypeError("exit-head training needs at least one exit layer")
        return loss

    model.heads.train()
    schedule = AdamWSchedule(lr=ee.head_lr, weight_decay=config.train.weight_decay, warmup=None, clip=None)
    optimizer_steps(model.heads.parameters(), steps, schedule, epoch_batches(epoch), step)
    model.heads.eval()


def _train_joint(model: EarlyExitClassifier, tokenizer: Any, data: TextDataset, config: DistillConfig) -> None:
    """Backbone, final classifier and heads together: CE on the final exit plus KD from it into every head."""
    enc = tokenizer(data.texts, truncation=True, max_length=config.train.max_length)["input_ids"]
    lengths = [len(ids) for ids in enc]

    def loss_fn(out: Any, labels: torch.Tensor, idx: list[int]) -> torch.Tensor:
        width = out.hidden_states[0].shape[1]
        mask = torch.zeros(len(idx), width)
        for b, i in enumerate(idx):
            mask[b, : min(lengths[i], width)] = 1
        final = out.logits
        loss = F.cross_entropy(final, labels)
        for k in model.exit_layers:
            z = model.heads[str(k)](masked_mean(out.hidden_states[k], mask))
            loss = loss + response_kd_loss(z, final.detach(), labels, config.temperature, config.alpha)
        return loss

    model.heads.train()
    finetune(model.base, tokenizer, data, config.train, loss_fn, desc="self-distil (joint)",
             extra_parameters=list(model.heads.parameters()), model_kwargs={"output_hidden_states": True},
             full_output=True)
    model.heads.eval()


NEVER = 1.0 + 1e-6
"""A threshold no softmax probability reaches: every example runs the full model."""


def simulate_exits(
    exit_logits: list[torch.Tensor], layers: list[int], threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions [N] and exit layers [N] of the early-exit rule, from every exit's logits (final last)."""
    conf = torch.stack([torch.softmax(z.float(), -1).amax(-1) for z in exit_logits[:-1]])  # [E, N]
    pred = torch.stack([z.argmax(-1) for z in exit_logits])  # [E+1, N]
    hit = conf >= threshold
    first = torch.where(hit.any(0), hit.float().argmax(0), torch.full_like(pred[0], len(exit_logits) - 1))
    return pred.gather(0, first.view(1, -1)).view(-1), torch.tensor(layers)[first]


def choose_threshold(
    exit_logits: list[torch.Tensor], layers: list[int], labels: torch.Tensor, max_drop: float,
    confidence: float = 0.5,
) -> tuple[float, dict[str, float]]:
    """The threshold with the fewest layers run on average whose accuracy drop against the full model stays within
    `max_drop` points; `exit_logits` [N, C] per exit in layer order, final classifier last, `layers` their depths.

    With `confidence` > 0.5 the drop must hold for a one-sided upper bound of the paired per-example difference
    (mean + z * sd / sqrt(N)), so a lucky validation set does not pick a threshold that fails on new data.
    """
    conf = torch.stack([torch.softmax(z.float(), -1).amax(-1) for z in exit_logits[:-1]])
    full_right = (exit_logits[-1].argmax(-1) == labels).float()
    full = 100 * full_right.mean().item()
    z_score = statistics.NormalDist().inv_cdf(confidence) if confidence > 0.5 else 0.0
    n = max(1, len(labels))
    grid = torch.unique(torch.cat([conf.reshape(-1), torch.linspace(0.5, 1.0, 101)])).tolist()
    best = (NEVER, full, float(layers[-1]), 0.0)
    for t in sorted(grid, reverse=True):
        pred, depth = simulate_exits(exit_logits, layers, t)
        diff = full_right - (pred == labels).float()
        sd = diff.std().item() if n > 1 else 0.0
        bound = 100 * (diff.mean().item() + z_score * sd / math.sqrt(n))
        cost = depth.float().mean().item()
        if bound <= max_drop and cost < best[2]:
            best = (t, 100 * (pred == labels).float().mean().item(), cost, float(bound))
    return best[0], {"accuracy": best[1], "full_accuracy": full, "mean_layers": best[2], "drop_bound": best[3]}


@torch.inference_mode()
def exit_logits_on(model: LoadedModel, texts: list[str], max_length: int, batch_size: int = 64) -> list[torch.Tensor]:
    """Every exit's logits (final last) on `texts`, all layers run."""
    ee = model.model
    if not isinstance(ee, EarlyExitClassifier):
        raise TypeError(f"exit_logits_on needs an EarlyExitClassifier, not {type(ee).__name__}")
    parts: list[list[torch.Tensor]] = []
    for start in range(0, len(texts), batch_size):
        enc = model.encode(texts[start : start + batch_size], max_length)
        parts.append(ee.all_exits(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")))
    return [torch.cat([p[e] for p in parts]) for e in range(len(parts[0]))]


def self_distill(
    model: LoadedModel, train: TextDataset, validation: TextDataset, config: DistillConfig
) -> LoadedModel:
    """An early-exit version of `model`: heads after shallow layers learn from its deepest layer (self-distillation).

    With `early_exit.freeze_backbone` (default) the backbone is shared and unchanged, so the full path is the
    original model; the threshold is chosen on `validation` unless given.
    """
    if len(train) == 0 or len(validation) == 0:
        raise UserError("Self-distillation needs training and validation examples.", "give more labelled data.")
    ee_cfg = config.early_exit
    base = model.model
    _encoder_parts(base)
    labels = label_names(model)
    train, validation = train.aligned_to(labels), validation.aligned_to(labels)
    total = len(_encoder_parts(base)[0].encoder.layer)
    layers = _exit_layers(total, ee_cfg)
    if not ee_cfg.freeze_backbone:
        base = copy.deepcopy(base)
    heads = new_heads(base.config.hidden_size, len(labels), layers, config.train.seed)
    ee = EarlyExitClassifier(base, layers, NEVER, heads).eval()
    loaded = LoadedModel(ee, model.tokenizer, model.manifest)
    if ee_cfg.freeze_backbone:
        _train_heads_frozen(ee, model, train, config)
    else:
        _train_joint(ee, model.tokenizer, train, config)
    base.eval()
    stats: dict[str, float] = {}
    if ee_cfg.threshold is not None:
        threshold = ee_cfg.threshold
    else:
        logits = exit_logits_on(loaded, validation.texts, config.train.max_length)
        threshold, stats = choose_threshold(
            logits, [*layers, total], torch.tensor(validation.labels), ee_cfg.max_drop, ee_cfg.confidence
        )
    ee.threshold = threshold
    recipe = {
        "exit_layers": list(layers),
        "threshold": threshold,
        "head": "mean-dense-tanh",
        "temperature": config.temperature,
        "alpha": config.alpha,
        **{k: v for k, v in dataclasses.asdict(ee_cfg).items() if k not in ("exit_layers", "threshold")},
        "validation": {k: round(v, 4) for k, v in stats.items()},
    }
    loaded.manifest = dataclasses.replace(
        model.manifest,
        name=f"{model.manifest.name}-exit",
        format="early-exit",
        method="distill:self",
        parent=model.manifest.fingerprint or None,
        labels=labels,
        recipe=[*model.manifest.recipe, {"stage": "early-exit", "config": recipe}],
    )
    return loaded
