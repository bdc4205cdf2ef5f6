"""The data of a run: test examples and how they are scored, calibration texts, the train split."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from infopt.data import DataConfig, TextDataset, load_dataset, load_text_corpus, split_dataset
from infopt.errors import UserError
from infopt.evaluate import EvalSpec, embed, one_example_words
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
    notes: list[str] = field(default_factory=list)
    """What to know about the test data, in words (how many examples, what one of them weighs, overlaps)."""

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


def _aligned_eval(test: TextDataset, model_labels: list[str], train: TextDataset, source: str) -> TextDataset:
    """The evaluation file's labels renumbered into the model's order, by name; it may hold only some classes.
    A model whose names say nothing (`LABEL_0`, ...) follows the order of the train data's names."""
    meaningless = not model_labels or all(re.fullmatch(r"LABEL_\d+", n) for n in model_labels)
    target = list(train.label_names if meaningless else model_labels)
    if not test.label_names or test.label_names == target:
        return test
    extra = [n for n in test.label_names if n not in target]
    if extra:
        raise UserError(
            f"The evaluation file {source} has labels {extra} that the model does not know (its labels: {target}).",
            "give an evaluation file with the model's class names.",
        )
    order = [target.index(n) for n in test.label_names]
    return TextDataset(test.name, test.texts, [order[y] for y in test.labels], target)


def _overlap_note(test: list[str], train: list[str]) -> list[str]:
    seen = {t.strip() for t in train}
    shared = sum(t.strip() in seen for t in test)
    if not shared:
        return []
    return [f"{shared:,} of the {len(test):,} evaluation texts are also in the training split: their scores flatter "
            "the variants that were trained on them"]


def _classification(
    model: LoadedModel, data: DataConfig | None, eval_data: DataConfig | None, eval_limit: int | None, seed: int
) -> EvalPlan:
    splits = split_dataset(load_dataset(data or default_data(model)), seed=seed)
    train = splits.train.aligned_to(model.manifest.labels)
    if eval_data is None:
        test, name, notes = splits.test.aligned_to(model.manifest.labels), splits.test.name, []
    else:
        test = _aligned_eval(load_dataset(eval_data), list(model.manifest.labels), train, eval_data.source)
        name, notes = test.name, _overlap_note(test.texts, train.texts)
    texts, labels = _limit(test.texts, eval_limit), _limit(test.labels, eval_limit)
    where = "the evaluation file" if eval_data else "the test split"
    notes.insert(0, f"accuracy is scored on {len(texts):,} examples of {where}: {one_example_words(len(texts))}")
    spec = EvalSpec("classification", texts, labels, speed_texts=texts[:200])
    return EvalPlan(spec, splits.train.texts[:128], name, "accuracy", train, notes)


def _texts(data: DataConfig) -> list[str]:
    """Plain texts of a labelled dataset or a corpus file."""
    if data.label_column or data.source in ("rotten-tomatoes", "tweets"):
        return load_dataset(data).texts
    return load_text_corpus(data.source, data.text_column or "text")


def plan_evaluation(
    model: LoadedModel, data: DataConfig | None, eval_limit: int | None = None, seed: int = 0,
    eval_data: DataConfig | None = None,
) -> EvalPlan:
    """Load and split the data for the model's task (None: the model's own or a bundled default); fails fast.

    With `eval_data` the whole of that file is the test data (cut to `eval_limit` if given) and `data` only gives
    the train split and the calibration texts.
    """
    rng = random.Random(seed)
    if model.task == "classification":
        return _classification(model, data, eval_data, eval_limit, seed)
    if model.task == "embedding":
        data = data or DataConfig("rotten-tomatoes")
        rng.shuffle(texts := list(_texts(data)))
        if eval_data is None:
            sample, name = texts[: eval_limit or 512], data.source
        else:
            sample, name = _limit(_texts(eval_data), eval_limit), eval_data.source
        spec = EvalSpec("embedding", sample, reference=embed(model, sample), speed_texts=sample[:200])
        return EvalPlan(spec, texts[-128:], name, "cosine_to_parent",
                        notes=[f"the embeddings are compared on {len(sample):,} texts"])
    source = data.source if data else "news"
    corpus = load_text_corpus(source, (data.text_column if data else None) or "text")
    rng.shuffle(corpus := list(corpus))
    if eval_data is None:
        held_out, calibration = corpus[: max(1, len(corpus) // 10)], corpus[len(corpus) // 10 :][:64]
        max_tokens, name = 256 * (eval_limit or 32), source
    else:
        held_out = load_text_corpus(eval_data.source, eval_data.text_column or "text")
        calibration, name = corpus[:64], eval_data.source
        # all of it: a text has at most one token per byte, plus its EOS
        max_tokens = 256 * eval_limit if eval_limit else sum(len(t.encode()) + 1 for t in held_out)
    speed = [" ".join(t.split()[:20]) for t in held_out[:64]]
    spec = EvalSpec("causal-lm", held_out, speed_texts=speed, prompt=LM_PROMPT, max_tokens=max_tokens)
    return EvalPlan(spec, calibration, name, "perplexity")
