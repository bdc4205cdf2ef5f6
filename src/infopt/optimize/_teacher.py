"""The default teacher: all-MiniLM-L6-v2 fine-tuned by infopt on Rotten Tomatoes reviews (fresh vs rotten)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from infopt.data import DataConfig, load_dataset, split_dataset
from infopt.evaluate import classification_quality
from infopt.models import LoadedModel, Manifest, bundled_path, fingerprint_folder, new_classifier, write_model
from infopt.train import FinetuneConfig, finetune

__all__ = ["TEACHER_DATA", "TEACHER_FINETUNE", "build_default_teacher"]

TEACHER_DATA = "rotten-tomatoes"


TEACHER_FINETUNE = FinetuneConfig(epochs=1.0, batch_size=32, lr=1e-4, max_length=64, seed=0)


def build_default_teacher(folder: Path) -> None:
    """Fine-tune MiniLM-L6 on the Rotten Tomatoes train split and write it, with its test accuracy, to `folder`.

    Registered as the builder of the bundled name `minilm-l6-rt` (entry point group `infopt.builders`)."""
    splits = split_dataset(load_dataset(DataConfig(TEACHER_DATA)), seed=0)
    base = bundled_path("minilm-l6")
    labels = splits.train.label_names
    model = new_classifier(base, labels, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    config = TEACHER_FINETUNE
    finetune(model, tokenizer, splits.train, config, desc="fine-tuning the default teacher (first use only)")
    manifest = Manifest(
        name="minilm-l6-rt",
        task="classification",
        method="finetune",
        parent=fingerprint_folder(base),
        labels=labels,
        recipe=[{"stage": "finetune", "config": {"data": TEACHER_DATA, "split_seed": 0, **vars(config)}}],
    )
    loaded = LoadedModel(model, tokenizer, manifest)
    quality = classification_quality(loaded, splits.test, max_length=config.max_length)
    loaded.manifest = Manifest(**{**vars(manifest), "metrics": {f"test_{k}": v for k, v in quality.items()}})
    write_model(loaded, folder)
