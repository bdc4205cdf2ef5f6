"""Teacher outputs computed once and cached on disk (offline distillation), keyed by teacher and data.

Folder: `cache_dir()/teacher-logits/<key>/`, key = sha256 of (teacher weights, tokenizer, texts, max_length).
Each item (logits, pooled hidden states of one layer, attention maps of one layer) is its own safetensors
file, written atomically, so a later run that needs more items computes only the missing ones.
Under torchrun rank 0 alone runs the teacher and writes the items; the other ranks then read them back
(without the cache rank 0 sends its outputs to them): the teacher never runs once per rank.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from infopt._atomic import atomic_file
from infopt.compress.distill._kinds import head_average
from infopt.errors import UserError
from infopt.models import LoadedModel, cache_dir, eval_mode, fingerprint_model, masked_mean
from infopt.train import distributed

_log = logging.getLogger(__name__)

__all__ = ["TeacherOutputs", "run_teacher", "teacher_cache_folder", "teacher_outputs"]


def _data_hash(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def teacher_cache_folder(teacher: LoadedModel, texts: list[str], max_length: int) -> Path:
    """Where the cached outputs of `teacher` on `texts` live."""
    key = hashlib.sha256(f"{fingerprint_model(teacher)}|{_data_hash(texts)}|{max_length}".encode()).hexdigest()
    return cache_dir() / "teacher-logits" / key[:24]


@dataclass
class TeacherOutputs:
    """A teacher's outputs on every text of a dataset, in dataset order."""

    logits: torch.Tensor
    """[N, C] logits in the teacher's label order."""
    pooled: dict[int, torch.Tensor] = field(default_factory=dict)
    """Hidden-state index (0 = embeddings, j = after layer j) -> [N, D] mean over real tokens."""
    attention: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    """Layer j (1-based) -> (flat head-averaged maps, [N] lengths): example i's map is lengths[i]^2 values."""
    ran_teacher: bool = False
    """Whether the teacher was run to produce these (False: everything came from the disk cache)."""
    _offsets: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def attention_batch(self, layer: int, idx: list[int], width: int) -> torch.Tensor:
        """[B, width, width] maps of the examples `idx`, zero-padded on the right and bottom."""
        flat, lengths = self.attention[layer]
        if layer not in self._offsets:
            self._offsets[layer] = torch.cumsum(lengths**2, 0) - lengths**2
        out = torch.zeros(len(idx), width, width)
        for b, i in enumerate(idx):
            n, o = int(lengths[i]), int(self._offsets[layer][i])
            out[b, :n, :n] = flat[o : o + n * n].view(n, n).float()
        return out


def _mask_of(enc: dict[str, torch.Tensor]) -> torch.Tensor:
    return enc["attention_mask"]


def run_teacher(
    teacher: LoadedModel,
    texts: list[str],
    max_length: int,
    pooled_layers: tuple[int, ...] = (),
    attention_layers: tuple[int, ...] = (),
) -> tuple[torch.Tensor, dict[int, torch.Tensor], dict[int, list[torch.Tensor]]]:
    """One forward pass of `teacher` over `texts` (its own tokenizer): logits, pooled states, attention maps.

    Gradients flow when called outside inference mode (online distillation); attention maps are per example
    [n, n] over its real tokens.
    """
    enc = teacher.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    out = teacher.model(
        **inputs, output_hidden_states=bool(pooled_layers), output_attentions=bool(attention_layers)
    )
    mask = _mask_of(inputs)
    pooled = {j: masked_mean(out.hidden_states[j], mask) for j in pooled_layers}
    maps: dict[int, list[torch.Tensor]] = {}
    for j in attention_layers:
        avg = head_average(out.attentions[j - 1])
        maps[j] = [avg[b][mask[b].bool()][:, mask[b].bool()] for b in range(len(texts))]
    return out.logits, pooled, maps


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    with atomic_file(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)


def _load(path: Path) -> dict[str, torch.Tensor] | None:
    if not path.is_file():
        return None
    try:
        return load_file(path)
    except Exception:  # a corrupt file is recomputed, never trusted
        return None


def _compute(
    teacher: LoadedModel, texts: list[str], max_length: int, pooled: tuple[int, ...], attention: tuple[int, ...],
    batch_size: int,
) -> TeacherOutputs:
    from tqdm.auto import tqdm

    model = teacher.model
    impl = getattr(model.config, "_attn_implementation", None)
    if attention and impl != "eager":
        model.set_attn_implementation("eager")
    _log.info("running teacher %s over %d texts", teacher.manifest.name, len(texts))
    lengths = [len(ids) for ids in teacher.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    logits: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    pooled_rows: dict[int, list[torch.Tensor]] = {j: [torch.empty(0)] * len(texts) for j in pooled}
    maps: dict[int, list[torch.Tensor]] = {j: [torch.empty(0)] * len(texts) for j in attention}
    try:
        with eval_mode(model), torch.inference_mode():
            for start in tqdm(range(0, len(order), batch_size), desc="teacher outputs", unit="batch", leave=False):
                idx = order[start : start + batch_size]
                lg, pl, mp = run_teacher(teacher, [texts[i] for i in idx], max_length, pooled, attention)
                for b, i in enumerate(idx):
                    logits[i] = lg[b].float()
                    for j in pooled:
                        pooled_rows[j][i] = pl[j][b].float()
                    for j in attention:
                        maps[j][i] = mp[j][b].to(torch.float16).reshape(-1)
    finally:
        if attention and impl is not None and impl != "eager":
            model.set_attn_implementation(impl)
    return TeacherOutputs(
        logits=torch.stack(logits) if texts else torch.empty(0),
        pooled={j: torch.stack(rows) for j, rows in pooled_rows.items()},
        attention={j: (torch.cat(m), torch.tensor([int(x.numel() ** 0.5) for x in m])) for j, m in maps.items()},
        ran_teacher=True,
    )


def teacher_outputs(
    teacher: LoadedModel,
    texts: list[str],
    max_length: int,
    pooled_layers: tuple[int, ...] = (),
    attention_layers: tuple[int, ...] = (),
    use_cache: bool = True,
    batch_size: int = 64,
) -> TeacherOutputs:
    """The teacher's logits (and the pooled hidden states / attention maps asked for) on `texts`.

    With `use_cache`, items already on disk for this teacher and data are read back and the teacher runs
    only for what is missing (not at all when everything is cached); new items are written atomically.
    Under torchrun only rank 0 runs the teacher (see the module docstring); an error there ends every rank.
    """
    args = (teacher, texts, max_length, pooled_layers, attention_layers)
    if distributed.world() is None:
        return _local_outputs(*args, use_cache, batch_size)
    if not use_cache:
        return distributed.broadcast_from_main(lambda: _compute(*args, batch_size))
    mine = distributed.on_main(lambda: _local_outputs(*args, True, batch_size))  # the others wait here
    if mine is not None:
        return distributed.run_agreed(lambda: mine)
    return distributed.run_agreed(lambda: _local_outputs(*args, True, batch_size, compute=False))


def _local_outputs(
    teacher: LoadedModel, texts: list[str], max_length: int, pooled_layers: tuple[int, ...],
    attention_layers: tuple[int, ...], use_cache: bool, batch_size: int, compute: bool = True,
) -> TeacherOutputs:
    if not use_cache:
        return _compute(teacher, texts, max_length, pooled_layers, attention_layers, batch_size)
    folder = teacher_cache_folder(teacher, texts, max_length)
    got = _load(folder / "logits.safetensors")
    out = TeacherOutputs(logits=got["logits"] if got else torch.empty(0))
    missing_pooled, missing_att = [], []
    for j in pooled_layers:
        item = _load(folder / f"pooled-{j}.safetensors")
        if item is None:
            missing_pooled.append(j)
        else:
            out.pooled[j] = item["pooled"].float()
    for j in attention_layers:
        item = _load(folder / f"attention-{j}.safetensors")
        if item is None:
            missing_att.append(j)
        else:
            out.attention[j] = (item["values"], item["lengths"])
    if (got is None or missing_pooled or missing_att) and not compute:
        raise UserError(
            f"This rank cannot read the teacher outputs rank 0 wrote to {folder}.",
            "give every rank the same $INFOPT_CACHE folder (one machine), or pass --no-cache.",
        )
    if got is None or missing_pooled or missing_att:
        new = _compute(teacher, texts, max_length, tuple(missing_pooled), tuple(missing_att), batch_size)
        out.ran_teacher = True
        if got is None:
            out.logits = new.logits
            _atomic_save({"logits": new.logits}, folder / "logits.safetensors")
        for j, p in new.pooled.items():
            half = p.to(torch.float16)
            out.pooled[j] = half.float()  # the same values a later run reads back
            _atomic_save({"pooled": half}, folder / f"pooled-{j}.safetensors")
        for j, (values, lengths) in new.attention.items():
            out.attention[j] = (values, lengths)
            _atomic_save({"values": values, "lengths": lengths}, folder / f"attention-{j}.safetensors")
        meta = {"teacher": teacher.manifest.name, "examples": len(texts), "max_length": max_length}
        (folder / "meta.json").write_text(json.dumps(meta))
    return out
