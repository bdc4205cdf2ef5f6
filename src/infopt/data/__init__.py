"""Datasets: the bundled ones by short name and a user's CSV / JSONL, with deterministic splits."""

from infopt.data._datasets import BUNDLED_DATASETS, DataConfig, TextDataset, load_dataset, load_text_corpus
from infopt.data._split import Splits, holdout, split_dataset
from infopt.data._tokens import joined_tokens, token_blocks

__all__ = [
    "BUNDLED_DATASETS",
    "DataConfig",
    "Splits",
    "TextDataset",
    "holdout",
    "joined_tokens",
    "load_dataset",
    "load_text_corpus",
    "split_dataset",
    "token_blocks",
]
