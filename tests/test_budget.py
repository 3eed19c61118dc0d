"""The working-memory budget: requests that together would exceed it wait their turn, in order; one
that waits too long is a 503. Driven with real asyncio tasks, timed by events, not by sleeps' lengths."""

from __future__ import annotations

import asyncio

import pytest

from dada.errors import Busy
from dada.server.budget import Budget


def test_requests_beyond_the_budget_wait_for_room():
    async def scenario() -> list[str]:
        budget, order = Budget(100, wait_seconds=10), []
        release = asyncio.Event()

        async def job(name: str, nbytes: int) -> None:
            async with budget.reserve(nbytes):
                order.append(f"{name} in ({budget.used})")
                if name == "a":
                    await release.wait()
            order.append(f"{name} out")

        a = asyncio.create_task(job("a", 70))
        await asyncio.sleep(0.01)
        b = asyncio.create_task(job("b", 50))  # 70 + 50 > 100: waits for a
        c = asyncio.create_task(job("c", 20))  # fits beside a
        await asyncio.sleep(0.05)
        assert budget.used == 70 and "b in (120)" not in order
        release.set()
        await asyncio.gather(a, b, c)
        assert budget.used == 0
        return order

    order = asyncio.run(scenario())
    entered = {x.split()[0]: i for i, x in enumerate(order) if " in " in x}
    assert entered["c"] < order.index("a out") < entered["b"]  # c fitted beside a; b waited for a
    assert all(int(x.split("(")[1].rstrip(")")) <= 100 for x in order if " in " in x)


def test_a_request_larger_than_the_budget_takes_all_of_it():
    async def scenario() -> None:
        budget = Budget(100)
        async with budget.reserve(10**12):
            assert budget.used == 100
        assert budget.used == 0

    asyncio.run(scenario())


def test_waiting_too_long_is_busy_and_frees_nothing():
    async def scenario() -> None:
        budget = Budget(100, wait_seconds=0.1)
        async with budget.reserve(80):
            with pytest.raises(Busy) as info:
                async with budget.reserve(30):
                    pass
            assert info.value.status == 503 and budget.used == 80
        assert budget.used == 0

    asyncio.run(scenario())
