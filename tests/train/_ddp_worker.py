"""Run by the DDP tests as `python _ddp_worker.py MODES DIR TAG` (one process) or under torchrun (one per rank).

DIR holds the inputs the test saved (tiny models as infopt folders, data.json). MODES, comma-separated, run in
turn: finetune | causal | recover | distill | distill-nocache | fail (rank 1 raises a UserError mid-training).
Each rank writes DIR/TAG/MODE-rank<r>.pt: the trained weights and how often the teacher ran on that rank
(fail: DIR/TAG/fail-rank<r>.txt, the error that rank raised).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from infopt.compress.distill import DistillConfig, distill
from infopt.compress.prune import RecoveryConfig
from infopt.compress.prune._recovery import recover
from infopt.data import TextDataset
from infopt.errors import UserError
from infopt.models import load_model
from infopt.train import FinetuneConfig, distributed, finetune

TRAIN = FinetuneConfig(epochs=2, batch_size=9, lr=1e-3, warmup=0.1, max_length=16, seed=3)
"""Batches of 9 split 5 / 4 over two ranks (and the epoch's last, 6, splits 3 / 3): uneven shards are weighted."""


def _counted(model: torch.nn.Module) -> list[int]:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    model.register_forward_hook(hook)
    return calls


def run(mode: str, folder: Path, out: Path) -> None:
    data = TextDataset(**json.loads((folder / "data.json").read_text()))
    calls = [0]
    w = distributed.world()
    rank = w.rank if w else 0
    if mode in ("finetune", "fail"):
        model = load_model(folder / "student")
        trained = model.model

        def loss(logits: torch.Tensor, labels: torch.Tensor, idx: list[int]) -> torch.Tensor:
            if mode == "fail" and w is not None and w.rank == 1:
                raise UserError("Rank 1 found a bad batch.", "check the data.")
            return torch.nn.functional.cross_entropy(logits, labels)

        try:
            finetune(trained, model.tokenizer, data, TRAIN, loss)
        except UserError as e:
            (out / f"{mode}-rank{rank}.txt").write_text(str(e))
            return
    elif mode in ("distill", "distill-nocache"):
        teacher, student = load_model(folder / "teacher"), load_model(folder / "student")
        calls = _counted(teacher.model)
        config = DistillConfig(temperature=2.0, alpha=0.5, feature=0.5, train=TRAIN, cache=mode == "distill")
        trained = distill(teacher, student, data, config).model
    elif mode == "causal":
        teacher, student = load_model(folder / "lm"), load_model(folder / "lm-student")
        config = DistillConfig(temperature=2.0, alpha=0.5, max_steps=4,
                               train=FinetuneConfig(batch_size=3, lr=1e-3, max_length=8, seed=1))
        trained = distill(teacher, student, data.texts, config).model
    elif mode == "recover":
        teacher, student = load_model(folder / "teacher"), load_model(folder / "student")
        config = RecoveryConfig(epochs=2, lr=1e-3, batch_size=9, max_length=16, seed=3)
        recover(student.model, teacher.model, student.tokenizer, "classification", config, data, [])
        trained = student.model
    else:
        raise SystemExit(f"unknown mode {mode}")
    state = {k: v.detach().clone() for k, v in trained.state_dict().items()}
    torch.save({"state": state, "teacher_calls": calls[0]}, out / f"{mode}-rank{rank}.pt")


def main(modes: str, folder: Path, tag: str) -> None:
    torch.set_num_threads(1)
    out = folder / tag
    out.mkdir(exist_ok=True)
    for mode in modes.split(","):
        run(mode, folder, out)
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
