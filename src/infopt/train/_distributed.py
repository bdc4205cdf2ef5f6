"""Data-parallel training under `torchrun` (gloo on CPU); every helper is a no-op in a single process.

Every rank runs the same code on the same seeded batch order and takes its part of each global batch
(`shard`). After backward the gradients of every optimized parameter are summed over ranks in one flat
all-reduce (what DistributedDataParallel does, bucketed, for a wrapped module's parameters) with each rank's
loss weighted by its share of the batch, so every rank takes the step one process takes on the whole batch.
One flat buffer instead of the DDP wrapper because the loops also optimize parameters outside the model
(distillation's projections, an online teacher) and call the bare module. Only rank 0 writes (`on_main`);
an error on any rank is raised on every rank with the first failing rank's message (`agree`).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from infopt.errors import InfoptError, UserError

__all__ = [
    "World",
    "agree",
    "broadcast_from_main",
    "broadcast_parameters",
    "is_main",
    "on_main",
    "rank_output",
    "run_agreed",
    "shard",
    "shutdown",
    "sync_gradients",
    "world",
]

T = TypeVar("T")

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_TIMEOUT = datetime.timedelta(hours=2)
"""How long a rank waits at a collective (rank 0 computing the teacher cache) before gloo gives up; a rank that
dies is noticed sooner: torchrun then stops the others."""


@dataclass(frozen=True)
class World:
    """This process's place in a torchrun job."""

    rank: int
    """Global rank (0 writes the outputs)."""
    size: int
    """Number of processes."""
    local_rank: int
    """Rank on this machine."""


_world: World | None = None


def _from_env() -> World | None:
    if not all(k in os.environ for k in _ENV):
        return None
    try:
        got = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    except ValueError:
        raise UserError(
            "RANK / WORLD_SIZE / LOCAL_RANK are set but are not integers.", "launch with torchrun, or unset them."
        ) from None
    if got.size > 1 and not all(k in os.environ for k in ("MASTER_ADDR", "MASTER_PORT")):
        raise UserError(
            "RANK / WORLD_SIZE are set but MASTER_ADDR / MASTER_PORT are not.",
            "launch with torchrun --nproc-per-node N, which sets them all, or unset RANK and WORLD_SIZE.",
        )
    return got if got.size > 1 else None


def world() -> World | None:
    """This process's World under torchrun with 2+ processes (the gloo group is set up on first call), else None.

    Torch runs one intra-op thread per rank unless OMP_NUM_THREADS says otherwise.
    """
    global _world
    if _world is not None:
        return _world
    found = _from_env()
    if found is None:
        return None
    if not dist.is_initialized():
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(1)
        dist.init_process_group("gloo", rank=found.rank, world_size=found.size, timeout=_TIMEOUT)
    _world = found
    return found


def is_main() -> bool:
    """True on rank 0 and in a single process."""
    w = world()
    return w is None or w.rank == 0


def shutdown() -> None:
    """Tear the process group down (end of a torchrun command); nothing in a single process."""
    global _world
    if _world is not None and dist.is_initialized():
        dist.destroy_process_group()
    _world = None


def shard(batch: Sequence[T]) -> list[T]:
    """This rank's contiguous part of a global batch (sizes differ by at most one; may be empty); all of it alone."""
    w = world()
    items = list(batch)
    if w is None:
        return items
    base, extra = divmod(len(items), w.size)
    start = w.rank * base + min(w.rank, extra)
    return items[start : start + base + (w.rank < extra)]


def _describe(error: BaseException) -> tuple[str, str, str, str]:
    """(module, class, problem, fix) of an InfoptError; ("", class, message, "") of anything else."""
    if isinstance(error, InfoptError):
        return type(error).__module__, type(error).__qualname__, error.problem, error.fix
    return "", type(error).__qualname__, str(error), ""


def _rebuild(desc: tuple[str, str, str, str], rank: int) -> BaseException:
    module, name, problem, fix = desc
    if module:
        with contextlib.suppress(Exception):
            cls = getattr(importlib.import_module(module), name)
            if isinstance(cls, type) and issubclass(cls, InfoptError):
                return cls(problem, fix)
        return InfoptError(problem, fix)
    return RuntimeError(f"rank {rank} failed: {name}: {problem}")


def agree(error: BaseException | None, flag: torch.Tensor | None = None) -> None:
    """Every rank calls this at the same point: if any rank had an error, all raise the first failing rank's.

    `flag` (a float, summed over ranks by the caller's own all-reduce) saves the extra collective when nobody
    failed; without it one tiny all-reduce asks. A single process re-raises its own error.
    """
    w = world()
    if w is None:
        if error is not None:
            raise error
        return
    if flag is None:
        flag = torch.tensor([0.0 if error is None else 1.0])
        dist.all_reduce(flag)
    if float(flag.item()) == 0.0:
        return
    found: list[Any] = [None] * w.size
    dist.all_gather_object(found, None if error is None else _describe(error))
    first = next(r for r, d in enumerate(found) if d is not None)
    if error is not None and first == w.rank:
        raise error
    raise _rebuild(found[first], first) from None


def run_agreed(fn: Callable[[], T]) -> T:
    """fn() on every rank, then `agree` on its error: one rank's failure ends every rank with the same message."""
    try:
        out = fn()
    except Exception as e:  # shared below; a bug keeps its traceback on the rank it happened on
        agree(e)
        raise
    agree(None)
    return out


def on_main(fn: Callable[[], T]) -> T | None:
    """fn() on rank 0 only (writes, one-off computations) while the others wait; its error is raised everywhere.

    Returns fn's result on rank 0 (and in a single process), None on the other ranks. fn must not itself use
    collectives (the other ranks are waiting in one).
    """
    w = world()
    if w is None:
        return fn()
    out: T | None = None
    error: Exception | None = None
    if w.rank == 0:
        try:
            out = fn()
        except Exception as e:  # shared with every rank by `agree`
            error = e
    agree(error)
    return out


def broadcast_from_main(fn: Callable[[], T]) -> T:
    """fn() computed once on rank 0 and sent (pickled) to every rank; errors as in `on_main`."""
    out = on_main(fn)
    if world() is None:
        return out  # type: ignore[return-value]  # fn's result
    box: list[Any] = [out]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[no-any-return]


def broadcast_parameters(params: Sequence[torch.nn.Parameter]) -> None:
    """Copy rank 0's values of `params` to every rank (as DDP does when it wraps a module)."""
    if world() is None or not params:
        return
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).float() for p in params])
        dist.broadcast(flat, src=0)
        offset = 0
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


def sync_gradients(params: Sequence[torch.nn.Parameter], error: BaseException | None = None) -> None:
    """Sum every parameter's gradient over ranks in one all-reduce (with this rank's error flag riding along).

    Each rank's loss must already be weighted by its share of the global batch, so the sum is the global
    batch's gradient. A parameter no rank touched keeps grad None, as in one process (AdamW skips it); an
    error on any rank is raised on all (`agree`).
    """
    if world() is None:
        agree(error)
        return
    grads = [p.grad.reshape(-1).float() if p.grad is not None else torch.zeros(p.numel()) for p in params]
    used = [1.0 if p.grad is not None else 0.0 for p in params]
    flat = torch.cat([*grads, torch.tensor([*used, 0.0 if error is None else 1.0])])
    dist.all_reduce(flat)
    agree(error, flag=flat[-1:])
    offset = 0
    for k, p in enumerate(params):
        n = p.numel()
        if flat[-1 - len(params) + k] == 0:
            p.grad = None
        else:
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n


@contextlib.contextmanager
def rank_output(output: Path, kind: str, overwrite: bool) -> Iterator[tuple[Path, bool]]:
    """(folder, overwrite) this rank writes its result to: the real `output` on rank 0 (checked there first,
    the check's error raised on every rank), a scratch folder deleted afterwards on the others; in a single
    process `output` itself, unchecked (the job checks it)."""
    from infopt._atomic import check_output

    if world() is None:
        yield output, overwrite
        return
    on_main(lambda: check_output(output, kind, overwrite))
    if is_main():
        yield output, overwrite
        return
    scratch = Path(tempfile.mkdtemp(prefix=f".infopt-rank-{world().rank}-"))  # type: ignore[union-attr]
    try:
        yield scratch / "out", False
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
