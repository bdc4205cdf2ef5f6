"""The data of a run: test examples and how they are scored, calibration texts, the train split."""

from __future__ import annotations

import random
from dataclasses import dataclass

from infopt.data import DataConfig, TextDataset, load_dataset, load_text_corpus, split_dataset
from infopt.errors import UserError
from infopt.evaluate import EvalSpec, embed
from infopt.models import LoadedModel
from infopt.optimize._recipes import StageInputs

__all__ = ["EvalPlan", "default_data", "plan_evaluation"]

LM_PROMPT = "Write a short review of a movie you liked, and explain why."


@dataclass
class EvalPlan:
    """The test data of a run, its calibration texts, the name of its data and (classifiers) its train split."""

    spec: EvalSpec
    calibration: list[str]
    data_name: str
    metric: str
    train: TextDataset | None = None

    @property
    def inputs(self) -> StageInputs:
        """What the recipes' stages may read."""
        return StageInputs(self.calibration, self.train)


def default_data(model: LoadedModel) -> DataConfig:
    """The labelled data a classifier was fine-tuned on (from its manifest); UserError if it does not say."""
    if source := model.manifest.trained_on():
        return DataConfig(source)
    raise UserError(
        f"Model {model.manifest.name} is a classifier and no labelled data was given.",
        "pass --data FILE --text-column NAME --label-column NAME.",
    )


def _limit(items: list, n: int | None) -> list:
    return items if n is None else items[:n]


def plan_evaluation(
    model: LoadedModel, data: DataConfig | None, eval_limit: int | None = None, seed: int = 0
) -> EvalPlan:
    """Load and split the data for the model's task (None: the model's own or a bundled default); fails fast."""
    rng = random.Random(seed)
    if model.task == "classification":
        splits = split_dataset(load_dataset(data or default_data(model)), seed=seed)
        test, train = (split.aligned_to(model.manifest.labels) for split in (splits.test, splits.train))
        texts = _limit(test.texts, eval_limit)
        spec = EvalSpec("classification", texts, _limit(test.labels, eval_limit), speed_texts=texts[:200])
        return EvalPlan(spec, splits.train.texts[:128], test.name, "accuracy", train)
    if model.task == "embedding":
        data = data or DataConfig("rotten-tomatoes")
        texts = (
            load_dataset(data).texts if data.label_column or data.source in ("rotten-tomatoes", "tweets")
            else load_text_corpus(data.source, data.text_column or "text")
        )
        rng.shuffle(texts := list(texts))
        sample = texts[: eval_limit or 512]
        spec = EvalSpec("embedding", sample, reference=embed(model, sample), speed_texts=sample[:200])
        return EvalPlan(spec, texts[-128:], data.source, "cosine_to_parent")
    source = data.source if data else "news"
    corpus = load_text_corpus(source, (data.text_column if data else None) or "text")
    rng.shuffle(corpus := list(corpus))
    held_out, calibration = corpus[: max(1, len(corpus) // 10)], corpus[len(corpus) // 10 :][:64]
    speed = [" ".join(t.split()[:20]) for t in held_out[:64]]
    max_tokens = 256 * (eval_limit or 32)
    spec = EvalSpec("causal-lm", held_out, speed_texts=speed, prompt=LM_PROMPT, max_tokens=max_tokens)
    return EvalPlan(spec, calibration, source, "perplexity")
