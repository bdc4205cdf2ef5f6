"""`vocab-trim`: keep only the vocabulary a domain uses, so the word embedding shrinks with it.

Kept: every token the domain's texts produce (the train split and the calibration texts), the special tokens, and
(`keep_chars`) the printable ASCII characters with their `##` forms, in their original order. The tokenizer's
WordPiece vocabulary is rewritten to match, so the folder still loads with plain transformers. WordPiece is
greedy longest-match-first, so every text seen here tokenizes exactly as before (checked on all of them); an unseen
word splits into the kept pieces, or becomes [UNK] where none fit.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import shutil
import string
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from infopt._config import CALIBRATION, TRAIN, Config, check_bool, check_int
from infopt.compress._checks import require_torch_module
from infopt.errors import NotApplicable, UserError
from infopt.models import LoadedModel

__all__ = ["VOCAB_STAGE", "VocabTrimConfig", "trim_vocab"]

VOCAB_STAGE = "vocab-trim"
_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


@dataclass(frozen=True)
class VocabTrimConfig(Config):
    """Keep the tokens the domain's texts use (train split + calibration texts) and the special tokens."""

    version: ClassVar[int] = 1

    min_count: int = 1
    """Keep a token only if the texts produce it at least this often (1: every token seen)."""
    keep_chars: bool = True
    """Also keep the printable ASCII characters and their `##` forms, so unseen words split instead of [UNK]."""

    def __post_init__(self) -> None:
        check_int(self, "min_count", min=1)
        check_bool(self, "keep_chars")

    def needs(self) -> frozenset[str]:
        """{"train", "calibration"}: the texts whose tokens are kept (classifiers: the train split's too)."""
        return frozenset({TRAIN, CALIBRATION})


def _check(model: LoadedModel) -> dict[str, int]:
    """The tokenizer's WordPiece vocabulary (token -> id), after refusing what cannot be trimmed."""
    require_torch_module(model, VOCAB_STAGE)
    if model.task not in ("classification", "embedding"):
        raise NotApplicable(f"vocab-trim supports classification and embedding models, not {model.task} (its output "
                            "layer is the vocabulary).", "drop vocab-trim from the recipe.")
    if model.manifest.format != "hf" or any(s.get("stage") == "quantize" for s in model.manifest.recipe):
        raise NotApplicable(f"vocab-trim needs a float model saved as transformers weights, not "
                            f"{model.manifest.format}.",
                            "trim the vocabulary first (vocab-trim+onnx-int8), then quantize.")
    backend = getattr(model.tokenizer, "backend_tokenizer", None)
    state = json.loads(backend.to_str()) if backend is not None else {}
    if state.get("model", {}).get("type") != "WordPiece":
        raise NotApplicable("vocab-trim supports WordPiece tokenizers (BERT, MiniLM, DistilBERT, ...) only.",
                            "drop vocab-trim from the recipe.")
    get = getattr(model.model, "get_output_embeddings", None)
    if callable(get) and get() is not None:
        raise NotApplicable("The model has an output layer over the vocabulary.", "drop vocab-trim from the recipe.")
    return dict(state["model"]["vocab"])


def _kept(tokenizer: PreTrainedTokenizerBase, vocab: dict[str, int], texts: Sequence[str],
          config: VocabTrimConfig) -> tuple[list[int], list[list[int]]]:
    """Old ids kept (ascending), and the texts' old ids (for the check)."""
    encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
    counts = collections.Counter(i for ids in encoded for i in ids)
    keep = {i for i, n in counts.items() if n >= config.min_count}
    keep |= set(tokenizer.all_special_ids) | {i for i in tokenizer.added_tokens_decoder}
    if config.keep_chars:
        chars = [c for c in string.printable if not c.isspace()]
        keep |= {vocab[t] for c in chars for t in (c, f"##{c}") if t in vocab}
    return sorted(keep), encoded


def _remap_special(node: Any, new_vocab: dict[str, int]) -> Any:
    """Post-processor JSON with special token ids renumbered (TemplateProcessing `ids`, BertProcessing pairs)."""
    if isinstance(node, dict):
        if isinstance(node.get("ids"), list) and isinstance(node.get("tokens"), list):
            node["ids"] = [new_vocab[t] for t in node["tokens"]]
        return {k: _remap_special(v, new_vocab) for k, v in node.items()}
    if isinstance(node, list):
        if len(node) == 2 and isinstance(node[0], str) and isinstance(node[1], int) and node[0] in new_vocab:
            return [node[0], new_vocab[node[0]]]
        return [_remap_special(v, new_vocab) for v in node]
    return node


def _new_tokenizer(tokenizer: PreTrainedTokenizerBase, tokens: list[str]) -> PreTrainedTokenizerBase:
    """The tokenizer with the vocabulary `tokens` (new id = position), written and read back as transformers does."""
    new_vocab = {t: i for i, t in enumerate(tokens)}
    folder = Path(tempfile.mkdtemp(prefix="infopt-vocab-"))
    try:
        tokenizer.save_pretrained(folder)
        state = json.loads((folder / "tokenizer.json").read_text())
        state["model"]["vocab"] = new_vocab
        for added in state.get("added_tokens", []):
            added["id"] = new_vocab[added["content"]]
        state["post_processor"] = _remap_special(state.get("post_processor"), new_vocab)
        if state.get("padding"):
            state["padding"]["pad_id"] = new_vocab[state["padding"]["pad_token"]]
        (folder / "tokenizer.json").write_text(json.dumps(state, ensure_ascii=False))
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text())
        if "added_tokens_decoder" in config:
            config["added_tokens_decoder"] = {str(new_vocab[v["content"]]): v
                                              for v in config["added_tokens_decoder"].values()}
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False))
        if (folder / "vocab.txt").exists():
            (folder / "vocab.txt").write_text("".join(f"{t}\n" for t in tokens))
        return AutoTokenizer.from_pretrained(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _trim_model(module: nn.Module, keep: list[int], old_to_new: dict[int, int]) -> None:
    emb = module.get_input_embeddings()  # type: ignore[operator]
    if not isinstance(emb, nn.Embedding) or emb.num_embeddings <= keep[-1]:
        raise NotApplicable("The model's word embedding does not match its tokenizer.", "drop vocab-trim.")
    pad = old_to_new.get(emb.padding_idx) if emb.padding_idx is not None else None
    new = nn.Embedding(len(keep), emb.embedding_dim, padding_idx=pad, dtype=emb.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(emb.weight[torch.tensor(keep)])
    module.set_input_embeddings(new)  # type: ignore[operator]
    config: Any = module.config
    config.vocab_size = len(keep)
    for name in _TOKEN_IDS:
        value = getattr(config, name, None)
        if isinstance(value, int):
            setattr(config, name, old_to_new.get(value))


def trim_vocab(model: LoadedModel, texts: Sequence[str], config: VocabTrimConfig | None = None) -> LoadedModel:
    """A new LoadedModel whose vocabulary (tokenizer and word embedding) keeps only what `texts` use."""
    config = config or VocabTrimConfig()
    vocab = _check(model)
    if not texts:
        raise UserError("vocab-trim needs the domain's texts.", "pass the train split or calibration texts.")
    keep, encoded = _kept(model.tokenizer, vocab, texts, config)
    by_id = {i: t for t, i in vocab.items()}
    old_to_new = {old: new for new, old in enumerate(keep)}
    tokenizer = _new_tokenizer(model.tokenizer, [by_id[i] for i in keep])
    covered = [n for n, ids in enumerate(encoded) if all(i in old_to_new for i in ids)]  # all, if min_count is 1
    again = tokenizer([texts[n] for n in covered], add_special_tokens=True, truncation=False)["input_ids"]
    bad = sum(a != [old_to_new[i] for i in encoded[n]] for a, n in zip(again, covered, strict=True))
    if bad:
        raise RuntimeError(f"vocab-trim: {bad} of {len(covered)} texts tokenize differently with the trimmed "
                           "vocabulary")
    module = copy.deepcopy(model.model).eval()
    before = module.get_input_embeddings().num_embeddings
    _trim_model(module, keep, old_to_new)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    info = {"vocab_before": before, "vocab_after": len(keep), "texts": len(texts), "sha256": digest}
    manifest = model.manifest.derive(VOCAB_STAGE, model.manifest.format, VOCAB_STAGE, config.to_dict(),
                                     {VOCAB_STAGE: info}, method=VOCAB_STAGE)
    return LoadedModel(module, tokenizer, manifest)
