"""Dynamic batching without HTTP: one bounded queue and its workers (one unless told more) per model.

Whenever the model is free, the worker groups the items waiting in the queue by length (`group_by_length`, groups
of at most `max_batch_size`) and runs the group that holds the oldest request's item, in one call of `run_batch`
on the model's own thread (so the event loop never blocks on inference). Taking from the whole queue gives tighter
groups than taking the first `max_batch_size` items, and the oldest request always runs next, so none starves. A
lone request at low load runs at once (`max_wait_ms` 0). A full queue raises `QueueFull` (429), a request that gets
no result within `timeout_s` raises `QueueTimeout` (504), and after `drain()` new requests raise `Unavailable`.
With `workers` > 1 that many batches run at once, each on a thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from infopt.serve._config import BatchingConfig
from infopt.serve._errors import QueueFull, QueueTimeout, Unavailable

__all__ = ["LOOKAHEAD", "PAD_BUDGET", "BatchObserver", "Batcher", "group_by_length", "stop_worker"]


async def stop_worker(name: str, task: asyncio.Task[Any] | None, wake: asyncio.Event | None,
                      timeout_s: float | None, abort: Callable[[Unavailable], None]) -> None:
    """The drain of a queue worker that no longer takes work: wake it, let it finish what it accepted, and after
    `timeout_s` cancel it and `abort` what is left with a 503 (shared by the batcher and the LM worker)."""
    if wake is not None:
        wake.set()
    if task is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except TimeoutError:
        task.cancel()
        abort(Unavailable(f"Model {name!r} shut down before answering.", "retry the request.", code="draining"))

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

PAD_BUDGET = 256
"""Padding tokens a group may gain from one longer item before that item starts a group of its own."""

LOOKAHEAD = 8
"""The worker groups at most this many batches' worth of waiting items (in arrival order) to pick the next one."""


class BatchObserver(Protocol):
    """What a batcher reports (e.g. to metrics); every method is called on the event loop."""

    def queue_depth(self, model: str, depth: int) -> None: ...
    def queue_wait(self, model: str, seconds: float) -> None: ...
    def batch(self, model: str, size: int, seconds: float) -> None: ...


class _NoObserver:
    def queue_depth(self, model: str, depth: int) -> None:
        pass

    def queue_wait(self, model: str, seconds: float) -> None:
        pass

    def batch(self, model: str, size: int, seconds: float) -> None:
        pass


def group_by_length(lengths: Sequence[int], max_batch_size: int, pad_budget: int = PAD_BUDGET) -> list[list[int]]:
    """Indices of `lengths` in groups of at most `max_batch_size`, shortest first; an item starts a new group
    when joining would add more than `pad_budget` padding tokens to the group (n items × the length jump)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        g = groups[-1] if groups else None
        if g is None or len(g) >= max_batch_size or len(g) * (lengths[i] - lengths[g[-1]]) > pad_budget:
            groups.append([i])
        else:
            g.append(i)
    return groups


@dataclass(eq=False)
class _Request(Generic[T, R]):
    items: list[T]
    lengths: list[int]
    future: asyncio.Future[list[R]]
    enqueued: float = field(default_factory=time.perf_counter)
    waiting: list[int] = field(init=False)  # indices of the items not taken yet
    results: dict[int, R] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.waiting = list(range(len(self.items)))


_Member = tuple[_Request[T, R], int]  # a request and the index of one of its items


class Batcher(Generic[T, R]):
    """Batches the items of concurrent `submit` calls into calls of `run_batch(items) -> results` (same order).

    Create it anywhere, `start()` it inside the running event loop, `await submit(items)` from request handlers
    and `await drain()` on shutdown. `length(item)` (e.g. its token count) groups items of similar length;
    `workers` batches run at once (`run_batch` must then be safe to call from that many threads).
    """

    def __init__(self, run_batch: Callable[[list[T]], list[R]], config: BatchingConfig | None = None, *,
                 name: str = "model", length: Callable[[T], int] | None = None,
                 observer: BatchObserver | None = None, workers: int = 1) -> None:
        self.run_batch = run_batch
        self.config = config or BatchingConfig()
        self.name = name
        self.length = length or (lambda _: 0)
        self.observer: BatchObserver = observer or _NoObserver()
        self._pending: deque[_Request[T, R]] = deque()
        self._accepting = True
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"infopt-serve-{name}")
        self._running: dict[int, list[_Request[T, R]]] = {}  # by worker: the requests with items in its batch
        self._batch_s = 0.0  # moving average of one model call, for Retry-After
        self._inside = 0  # requests the door admitted and that are not answered yet

    # ------------------------------------------------------------ public

    @property
    def depth(self) -> int:
        """Requests waiting in the queue (not counting the batch being run)."""
        return len(self._pending)

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def running(self) -> int:
        """Batches being run now (a worker's batch counts from when it is taken until its results are set)."""
        return len(self._running)

    @property
    def _in_flight(self) -> list[_Request[T, R]]:
        """The requests with items in a batch being run (each once)."""
        return list({id(r): r for batch in self._running.values() for r in batch}.values())

    def start(self) -> None:
        """Start the workers on the running event loop (idempotent)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._work_all(), name=f"batcher-{self.name}")

    def call_in_worker(self, fn: Callable[[], object]) -> None:
        """Run `fn` on a worker thread ahead of the batches queued after it (a check that must run on the thread
        that runs the model); its errors are logged."""
        def run() -> None:
            try:
                fn()
            except Exception:
                log.exception("a call on the worker of model %r failed", self.name)
        self._executor.submit(run)

    async def submit(self, items: list[T]) -> list[R]:
        """Queue `items` as one request and wait for their results (in order)."""
        if not self._accepting or self._task is None:
            raise Unavailable(f"Model {self.name!r} is not taking requests (the server is shutting down).",
                              "retry on another replica or after the restart.", code="draining")
        if not items:
            return []
        full = self.refusal()
        if full is not None:
            raise full
        loop = asyncio.get_running_loop()
        request: _Request[T, R] = _Request(list(items), [self.length(x) for x in items], loop.create_future())
        self._pending.append(request)
        self.observer.queue_depth(self.name, len(self._pending))
        assert self._wake is not None
        self._wake.set()
        try:
            return await asyncio.wait_for(request.future, self.config.timeout_s)
        except TimeoutError:
            where = "in the queue" if request in self._pending else "for its batch"
            raise QueueTimeout(f"The request to model {self.name!r} waited more than {self.config.timeout_s:g} s "
                               f"{where}.", "retry later, send fewer inputs, or raise batching.timeout_s.") from None
        finally:
            if request in self._pending:
                self._pending.remove(request)
                self.observer.queue_depth(self.name, len(self._pending))

    def refusal(self, waiting: int = 0) -> QueueFull | None:
        """The 429 a new request gets now (the queue, or the `waiting` requests the caller knows of, fill it), else
        None."""
        if max(len(self._pending), waiting) >= self.config.max_queue:
            return QueueFull(self.name, self.config.max_queue, self.retry_after_s())
        return None

    def admit(self) -> QueueFull | None:
        """The server's door, before a request is parsed: its 429 when the queue is full, or when as many requests
        as the queue holds are already inside and not running (a burst is refused before any of it reaches the
        queue); else None, and the request counts as inside until `leave`."""
        full = self.refusal(waiting=self._inside - len(self._in_flight))
        if full is None:
            self._inside += 1
        return full

    def leave(self) -> None:
        """An admitted request is answered (or failed)."""
        self._inside = max(0, self._inside - 1)

    def retry_after_s(self) -> int:
        """Whole seconds until the queue has likely room again (at least 1)."""
        batches = len(self._pending) / max(1, self.config.max_batch_size) + 1
        return max(1, math.ceil(batches * self._batch_s))

    async def drain(self, timeout_s: float | None = None) -> None:
        """Stop taking requests, finish the accepted ones (failing any left after `timeout_s`), stop the worker."""
        self._accepting = False

        def abort(gone: Unavailable) -> None:
            for request in [*self._in_flight, *self._pending]:
                if not request.future.done():
                    request.future.set_exception(gone)
            self._pending.clear()

        await stop_worker(self.name, self._task, self._wake, timeout_s, abort)
        self._executor.shutdown(wait=False)

    # ------------------------------------------------------------ worker

    def _take(self) -> list[_Member[T, R]]:
        """The next group to run: waiting items grouped by length, the (shortest) group with the oldest request's item.

        Requests with nothing left waiting leave the queue; timed-out or cancelled ones are dropped."""
        live = [r for r in self._pending if not r.future.done()]
        flat = [(r, i) for r in live for i in r.waiting][: LOOKAHEAD * self.config.max_batch_size]
        rank = {id(r): k for k, r in enumerate(live)}
        groups = group_by_length([r.lengths[i] for r, i in flat], self.config.max_batch_size)
        group = [flat[j] for j in min(groups, key=lambda g: rank[id(flat[min(g)][0])])] if groups else []
        now = time.perf_counter()
        for request, i in group:
            if len(request.waiting) == len(request.items):  # its first item leaves the queue
                self.observer.queue_wait(self.name, now - request.enqueued)
            request.waiting.remove(i)
        self._pending = deque(r for r in live if r.waiting)
        self.observer.queue_depth(self.name, len(self._pending))
        return group

    def _queued_items(self) -> int:
        return sum(len(r.waiting) for r in self._pending if not r.future.done())

    async def _wait_for_more(self) -> None:
        """Up to max_wait_ms after the first request, while the next batch is not full."""
        assert self._wake is not None
        deadline = time.perf_counter() + self.config.max_wait_ms / 1000
        while self._accepting and self._queued_items() < self.config.max_batch_size:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return

    async def _work_all(self) -> None:
        await asyncio.gather(*(self._work(k) for k in range(self.workers)))

    async def _work(self, worker: int) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if not self._accepting:
                    return
                self._wake.clear()
                await self._wake.wait()
            if self.config.max_wait_ms > 0:
                await self._wait_for_more()
            group = self._take()
            self._running[worker] = list({id(r): r for r, _ in group}.values())
            try:
                if group:
                    await self._run_group(loop, group)
            except Exception as e:  # a bug here must not leave requests hanging until their timeout
                log.exception("batcher of model %r failed", self.name)
                for request in self._running[worker]:
                    if not request.future.done():
                        request.future.set_exception(e)
            finally:
                del self._running[worker]

    async def _run_group(self, loop: asyncio.AbstractEventLoop, members: list[_Member[T, R]]) -> None:
        start = time.perf_counter()
        try:
            results: Any = await loop.run_in_executor(self._executor, self.run_batch, [r.items[i] for r, i in members])
            if len(results) != len(members):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(members)} items")
        except Exception as e:
            for request, _ in members:
                if not request.future.done():
                    request.future.set_exception(e)
            return
        seconds = time.perf_counter() - start
        self._batch_s = seconds if self._batch_s == 0 else 0.8 * self._batch_s + 0.2 * seconds
        self.observer.batch(self.name, len(members), seconds)
        for (request, i), result in zip(members, results, strict=True):
            request.results[i] = result
            if len(request.results) == len(request.items) and not request.future.done():
                request.future.set_result([request.results[j] for j in range(len(request.items))])
