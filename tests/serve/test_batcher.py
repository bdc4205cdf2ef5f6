from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from infopt.serve import Batcher, BatchingConfig, QueueFull, QueueTimeout, Unavailable, group_by_length


class Fake:
    """A model function: doubles numbers, records batches, optionally blocks until released."""

    def __init__(self, delay_s: float = 0.0, blocked: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.release = threading.Event()
        if not blocked:
            self.release.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.entered.set()
        self.release.wait(10)
        time.sleep(self.delay_s)
        return [2 * x for x in items]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


async def _started(fake: Fake, **config: Any) -> Batcher[int, int]:
    b: Batcher[int, int] = Batcher(fake, BatchingConfig(**config), name="fake", length=lambda x: x)
    b.start()
    return b


async def _wait_entered(fake: Fake) -> None:
    while not fake.entered.is_set():
        await asyncio.sleep(0.001)


def test_group_by_length() -> None:
    assert group_by_length([5, 1, 3], 8) == [[1, 2, 0]]
    assert group_by_length([1] * 5, 2) == [[0, 1], [2, 3], [4]]
    # 31 short texts and one long one: the long one goes alone instead of padding 31 texts by 490 tokens
    groups = group_by_length([10] * 31 + [500], 32)
    assert groups == [list(range(31)), [31]]
    assert group_by_length([], 4) == []


def test_lone_request_runs_at_once() -> None:
    async def main() -> None:
        fake = Fake()
        b = await _started(fake, max_wait_ms=0)
        t0 = time.perf_counter()
        assert await b.submit([1, 2, 3]) == [2, 4, 6]
        assert time.perf_counter() - t0 < 0.5
        assert await b.submit([]) == []
        assert fake.batches == [[1, 2, 3]]
        await b.drain()

    run(main())


def test_takes_everything_queued_up_to_max_batch_size() -> None:
    async def main() -> None:
        fake = Fake(blocked=True)
        b = await _started(fake, max_batch_size=4)
        first = asyncio.ensure_future(b.submit([100]))
        await _wait_entered(fake)  # the model is busy with [100]; the rest queue up
        rest = [asyncio.ensure_future(b.submit([i])) for i in range(6)]
        await asyncio.sleep(0.01)
        assert b.depth == 6
        fake.release.set()
        assert await first == [200]
        assert [await r for r in rest] == [[2 * i] for i in range(6)]
        assert fake.batches == [[100], [0, 1, 2, 3], [4, 5]]
        await b.drain()

    run(main())


def test_groups_the_whole_queue_and_runs_the_oldest_first() -> None:
    async def main() -> None:
        fake = Fake(blocked=True)
        b = await _started(fake, max_batch_size=4)
        first = asyncio.ensure_future(b.submit([0]))
        await _wait_entered(fake)
        # long and short requests interleaved, the oldest one long: the long ones form one group and run first
        # (the oldest request's), the short ones wait for the next batch instead of being padded to 400 tokens
        lengths = [400, 10, 401, 11, 402, 12, 13]
        rest = [asyncio.ensure_future(b.submit([n])) for n in lengths]
        await asyncio.sleep(0.01)
        fake.release.set()
        assert await first == [0] and [await r for r in rest] == [[2 * n] for n in lengths]
        assert fake.batches == [[0], [400, 401, 402], [10, 11, 12, 13]]
        await b.drain()

    run(main())


def test_results_in_order_across_length_groups() -> None:
    async def main() -> None:
        fake = Fake()
        b = await _started(fake, max_batch_size=3)
        # one request larger than max_batch_size: split into groups of similar length, answered in order
        items = [900, 1, 800, 2, 3, 700]
        assert await b.submit(items) == [2 * x for x in items]
        assert fake.batches == [[1, 2, 3], [700, 800, 900]]
        await b.drain()

    run(main())


def test_max_wait_collects_a_batch() -> None:
    async def main() -> None:
        fake = Fake()
        b = await _started(fake, max_batch_size=8, max_wait_ms=100)
        async def later(i: int) -> list[int]:
            await asyncio.sleep(0.01 * i)
            return await b.submit([i])
        assert await asyncio.gather(*(later(i) for i in range(4))) == [[0], [2], [4], [6]]
        assert fake.batches == [[0, 1, 2, 3]]
        await b.drain()

    run(main())


def test_queue_full() -> None:
    async def main() -> None:
        fake = Fake(blocked=True)
        b = await _started(fake, max_queue=2, max_batch_size=1)
        first = asyncio.ensure_future(b.submit([1]))
        await _wait_entered(fake)
        queued = [asyncio.ensure_future(b.submit([i])) for i in (2, 3)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull) as e:
            await b.submit([4])
        assert e.value.http_status == 429 and e.value.retry_after_s >= 1
        fake.release.set()
        assert await first == [2] and [await q for q in queued] == [[4], [6]]
        await b.drain()

    run(main())


def test_the_door_admits_what_the_queue_holds_besides_the_running_batch() -> None:
    async def main() -> None:
        fake = Fake(blocked=True)
        b = await _started(fake, max_queue=3, max_batch_size=2)
        assert [b.admit() for _ in range(3)] == [None] * 3  # not queued yet: the door counts them
        refused = b.admit()
        assert isinstance(refused, QueueFull) and refused.http_status == 429
        b.leave()
        assert b.admit() is None and isinstance(b.admit(), QueueFull)
        running = [asyncio.ensure_future(b.submit([i])) for i in (1, 2)]
        await _wait_entered(fake)  # two requests run: two more places at the door
        assert [b.admit(), b.admit()] == [None, None] and isinstance(b.admit(), QueueFull)
        fake.release.set()
        assert [await r for r in running] == [[2], [4]]
        for _ in range(8):
            b.leave()
        assert b.admit() is None  # never below zero
        await b.drain()

    run(main())


def test_timeout_in_queue_and_in_flight() -> None:
    async def main() -> None:
        fake = Fake(blocked=True)
        b = await _started(fake, timeout_s=0.1, max_batch_size=1)
        first = asyncio.ensure_future(b.submit([1]))
        await _wait_entered(fake)
        with pytest.raises(QueueTimeout, match="in the queue") as e:
            await b.submit([2])
        assert e.value.http_status == 504 and b.depth == 0
        with pytest.raises(QueueTimeout, match="for its batch"):
            await first
        fake.release.set()
        assert await b.submit([3]) == [6]  # the worker survives both
        assert [2] not in fake.batches  # the timed-out queued request never ran
        await b.drain()

    run(main())


def test_drain_finishes_accepted_and_refuses_new() -> None:
    async def main() -> None:
        fake = Fake(blocked=True, delay_s=0.01)
        b = await _started(fake, max_batch_size=2)
        accepted = [asyncio.ensure_future(b.submit([i])) for i in range(5)]
        await _wait_entered(fake)
        drained = asyncio.ensure_future(b.drain())
        await asyncio.sleep(0.01)
        with pytest.raises(Unavailable) as e:
            await b.submit([9])
        assert e.value.http_status == 503
        fake.release.set()
        await drained
        assert [await a for a in accepted] == [[2 * i] for i in range(5)]

    run(main())


def test_drain_timeout_fails_the_rest() -> None:
    async def main() -> None:
        fake = Fake(blocked=True)
        b = await _started(fake, max_batch_size=1)
        accepted = [asyncio.ensure_future(b.submit([i])) for i in range(3)]
        await _wait_entered(fake)
        await b.drain(timeout_s=0.05)
        fake.release.set()
        results = await asyncio.gather(*accepted, return_exceptions=True)
        assert any(isinstance(r, Unavailable) for r in results)

    run(main())


def test_model_error_reaches_its_requests_only() -> None:
    async def main() -> None:
        def flaky(items: list[int]) -> list[int]:
            if -1 in items:
                raise ValueError("bad item")
            return items

        b: Batcher[int, int] = Batcher(flaky, BatchingConfig(), name="flaky")
        b.start()
        with pytest.raises(ValueError, match="bad item"):
            await b.submit([-1])
        assert await b.submit([5]) == [5]
        await b.drain()

    run(main())


def test_observer_sees_depth_waits_and_batches() -> None:
    class Seen:
        def __init__(self) -> None:
            self.depths: list[int] = []
            self.waits: list[float] = []
            self.batches: list[int] = []

        def queue_depth(self, model: str, depth: int) -> None:
            self.depths.append(depth)

        def queue_wait(self, model: str, seconds: float) -> None:
            self.waits.append(seconds)

        def batch(self, model: str, size: int, seconds: float) -> None:
            self.batches.append(size)

    async def main() -> None:
        seen = Seen()
        b: Batcher[int, int] = Batcher(Fake(), BatchingConfig(), observer=seen)
        b.start()
        await asyncio.gather(b.submit([1, 2]), b.submit([3]))
        assert sum(seen.batches) == 3 and len(seen.waits) == 2 and max(seen.depths) >= 1 and seen.depths[-1] == 0
        await b.drain()

    run(main())


def test_workers_run_batches_at_once_and_drain_both() -> None:
    meet = threading.Barrier(2, timeout=10)  # passes only when two batches run at the same time

    seen: list[int] = []

    def both(items: list[int]) -> list[int]:
        seen.append(b.running)
        meet.wait()
        return items

    b: Batcher[int, int] = Batcher(both, BatchingConfig(max_batch_size=1), workers=2)

    async def main() -> None:
        b.start()
        assert await asyncio.gather(b.submit([1]), b.submit([2])) == [[1], [2]]
        pending = [asyncio.ensure_future(b.submit([k])) for k in (3, 4)]
        await asyncio.sleep(0)
        await b.drain(10)
        assert [p.result() for p in pending] == [[3], [4]]

    run(main())
    assert max(seen[:2]) == max(seen[2:]) == 2 and b.running == 0  # the second of each pair sees both


def test_a_call_in_the_worker_runs_before_the_batches_queued_after_it() -> None:
    order: list[object] = []

    def batch(items: list[int]) -> list[int]:
        order.append(threading.current_thread().name)
        return items

    async def main() -> None:
        b: Batcher[int, int] = Batcher(batch, BatchingConfig(), name="m")
        b.start()
        b.call_in_worker(lambda: order.append("probe"))
        b.call_in_worker(lambda: 1 / 0)  # logged, and the batcher carries on
        assert await b.submit([1]) == [1]
        await b.drain()

    run(main())
    assert order[0] == "probe" and str(order[1]).startswith("infopt-serve-m")
