"""Helpers of the DDP tests: save tiny models for a subprocess, run _ddp_worker.py alone or under torchrun."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerBase

from infopt.models import LoadedModel, Manifest, save_model
from tests.conftest import make_reviews, tiny_classifier  # type: ignore[import-not-found]

WORKER = Path(__file__).with_name("_ddp_worker.py")
TOLERANCE = 1e-5
"""Largest |w_ddp - w_one_process| allowed after training (float32; measured: about 1e-7 after 22 AdamW steps at
lr 1e-3). The ranks sum the same per-example gradients in another order and pad their shards to their own longest
text, so each gradient differs by float rounding (~1e-7 relative); AdamW's steps are at most ~lr in size, so the
weights differ by a few rounding errors, not by a step: 1e-5 is 100x the measured gap and 100x below one step."""


def _no_dropout(model: LoadedModel) -> LoadedModel:
    model.model.config.hidden_dropout_prob = 0.0  # saved in config.json: the worker's copy has no dropout either
    model.model.config.attention_probs_dropout_prob = 0.0
    return model


def _llama(tokenizer: PreTrainedTokenizerBase, seed: int) -> LoadedModel:
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    return LoadedModel(model, tokenizer, Manifest(name=f"tiny-lm-{seed}", task="causal-lm"))


def prepare(folder: Path, tokenizer: PreTrainedTokenizerBase, causal: bool = False) -> Path:
    """Save a tiny 4-layer teacher, a 2-layer student (no dropout) and 96 reviews (and tiny LMs) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.json").write_text(json.dumps(dataclasses.asdict(make_reviews(96))))
    save_model(_no_dropout(tiny_classifier(tokenizer, layers=4, name="tiny-teacher")), folder / "teacher")
    save_model(_no_dropout(tiny_classifier(tokenizer, layers=2, seed=1, name="tiny-student")), folder / "student")
    if causal:
        save_model(_llama(tokenizer, 0), folder / "lm")
        save_model(_llama(tokenizer, 1), folder / "lm-student")
    return folder


def env(cache: Path) -> dict[str, str]:
    """The subprocess environment: a private infopt cache, offline, quiet, no inherited torchrun variables."""
    out = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMP_NUM_THREADS")}
    out.update(INFOPT_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TQDM_DISABLE="1")
    return out


def torchrun(*args: str) -> list[str]:
    """`python -m torch.distributed.run` with two CPU ranks on a free local port."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]


def launch(modes: str, folder: Path, tag: str, ranks: int) -> None:
    """Run the worker alone (ranks=1) or under torchrun (ranks=2); fails the test on a non-zero exit."""
    cmd = torchrun(str(WORKER)) if ranks == 2 else [sys.executable, str(WORKER)]
    done = subprocess.run([*cmd, modes, str(folder), tag], env=env(folder / f"cache-{tag}"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def result(folder: Path, tag: str, mode: str, rank: int = 0) -> dict[str, Any]:
    """What the worker saved: {"state": weights, "teacher_calls": n}."""
    return torch.load(folder / tag / f"{mode}-rank{rank}.pt")  # type: ignore[no-any-return]


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference over every weight of two state dicts (same keys)."""
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


MODES = "finetune,recover,causal,distill,distill-nocache"
_runs: dict[str, Path] = {}


def runs(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase) -> Path:
    """Every worker mode run once alone ("one") and once under torchrun ("ddp", plus "fail"), shared by the
    test files of this session (each launch pays ~10 s of imports on a 2-core machine)."""
    if "folder" not in _runs:
        folder = prepare(tmp_path_factory.mktemp("ddp"), tokenizer, causal=True)
        launch(MODES, folder, "one", ranks=1)
        launch(f"{MODES},fail", folder, "ddp", ranks=2)
        _runs["folder"] = folder
    return _runs["folder"]
