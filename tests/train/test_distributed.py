"""Data-parallel training: the helpers (no-ops alone), and real `torchrun --nproc-per-node 2` runs (gloo on CPU)
of fine-tuning, pruning recovery and causal-LM distillation that end with the weights one process gets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from infopt.errors import NotApplicable, UserError
from infopt.models import load_model
from infopt.train import distributed
from infopt.train._distributed import World, _describe, _rebuild
from tests.train._ddp import TOLERANCE, max_diff, result, runs  # type: ignore[import-not-found]


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_world", None)


def test_shards_cover_the_batch_in_order_and_differ_by_at_most_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for size, batch in [(2, list(range(9))), (3, list(range(7))), (2, [5])]:
        parts = []
        for rank in range(size):
            monkeypatch.setattr(distributed, "_world", World(rank, size, rank))
            parts.append(distributed.shard(batch))
        assert [i for p in parts for i in p] == batch
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parts == [[5], []]  # a rank may get no example of a tiny batch


def test_everything_is_a_no_op_in_one_process(alone: None) -> None:
    assert distributed.world() is None and distributed.is_main()
    assert distributed.shard([3, 1, 2]) == [3, 1, 2]
    assert distributed.on_main(lambda: 7) == 7 and distributed.broadcast_from_main(lambda: "x") == "x"
    distributed.agree(None)
    with pytest.raises(UserError, match="mine"):
        distributed.agree(UserError("mine", "fix it."))
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    distributed.sync_gradients([p])
    assert p.grad.tolist() == [3.0, 3.0]
    with distributed.rank_output(Path("somewhere"), "model", True) as (out, overwrite):
        assert (out, overwrite) == (Path("somewhere"), True)


def test_an_error_is_rebuilt_with_its_class_and_message_on_the_other_ranks() -> None:
    again = _rebuild(_describe(NotApplicable("Not for this model.", "use another.")), 1)
    assert type(again) is NotApplicable and (again.problem, again.fix) == ("Not for this model.", "use another.")
    bug = _rebuild(_describe(KeyError("weights")), 1)
    assert isinstance(bug, RuntimeError) and "rank 1 failed: KeyError" in str(bug)


@pytest.mark.slow  # two subprocesses (one with two ranks), shared with test_distill_ddp.py: ~35 s on 2 cores
def test_torchrun_training_gives_the_one_process_weights(
    tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase
) -> None:
    folder = runs(tmp_path_factory, tokenizer)
    for mode, start in [("finetune", "student"), ("recover", "student"), ("causal", "lm-student")]:
        one, r0, r1 = result(folder, "one", mode), result(folder, "ddp", mode, 0), result(folder, "ddp", mode, 1)
        assert max_diff(one["state"], r0["state"]) < TOLERANCE, mode
        assert max_diff(r0["state"], r1["state"]) == 0.0, mode  # every rank took the same step
        before = load_model(folder / start).model.state_dict()
        assert max_diff(before, one["state"]) > 100 * TOLERANCE, mode  # training moved the weights
    # rank 1 failed in its loss at the first step: both ranks raised its error
    messages = {(folder / "ddp" / f"fail-rank{r}.txt").read_text() for r in (0, 1)}
    assert messages == {"Rank 1 found a bad batch. Fix: check the data."}


def test_rank_variables_without_a_rendezvous_are_one_clear_error(alone: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(UserError, match="MASTER_ADDR / MASTER_PORT are not") as e:
        distributed.world()
    assert "torchrun" in e.value.fix
