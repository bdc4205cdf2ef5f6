"""The middleware's turnstile: admitted requests go on one per event-loop iteration."""

from __future__ import annotations

import asyncio

from infopt.serve._http import Turnstile


def test_turnstile_lets_one_through_per_loop_iteration_and_skips_the_cancelled() -> None:
    async def main() -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        ticks = 0
        ticking = True

        def tick() -> None:  # counts event-loop iterations
            nonlocal ticks
            ticks += 1
            if ticking:
                loop.call_soon(tick)

        tick()
        gate = Turnstile()
        through: list[tuple[str, int]] = []

        async def request(name: str) -> None:
            await gate.turn()
            through.append((name, ticks))

        tasks = {n: asyncio.ensure_future(request(n)) for n in "abcd"}
        await asyncio.sleep(0)
        tasks["b"].cancel()  # gone before its turn: the next one goes instead
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        ticking = False
        later = asyncio.ensure_future(request("e"))  # the turnstile opens again for the next burst
        await later
        return through

    through = asyncio.run(asyncio.wait_for(main(), 10))
    assert [n for n, _ in through] == ["a", "c", "d", "e"]
    burst = [t for n, t in through if n != "e"]
    assert burst == sorted(set(burst))  # a, c and d each in an iteration of its own
