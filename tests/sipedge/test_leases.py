"""Leases (sipedge.leases, issue 6.2) in memory and on a real Redis server: ten edge
processes asking at once get one holder; the holder renews, the others wait; a lapsed
lease goes to the next who asks; only the holder releases, and a holder whose lease went
to another can neither renew nor release the new one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from sipedge.adapters.redis_leases import RedisLeases
from sipedge.leases import Leases, MemoryLeases

from .conftest import REDIS_URL

pytestmark = pytest.mark.asyncio

#: Lets time pass: the memory leases' clock moves, Redis's TTL runs down for real.
Pass = Callable[[float], Awaitable[None]]


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(params=["memory", "redis"])
async def leases(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Callable[[], Leases], Pass]]:
    """Opens another process's view of the same leases, and lets time pass."""
    if request.param == "memory":
        clock = Clock()
        shared = MemoryLeases(clock)

        async def pass_memory(seconds: float) -> None:
            clock.now += seconds

        yield (lambda: shared), pass_memory
        return
    prefix = f"cloudpbx-test:{uuid.uuid4().hex}:"
    clients: list[Redis] = []

    def open_redis() -> Leases:
        client = Redis.from_url(REDIS_URL)
        clients.append(client)
        return RedisLeases(client, key_prefix=prefix)

    async def pass_redis(seconds: float) -> None:
        await asyncio.sleep(seconds)

    try:
        yield open_redis, pass_redis
    finally:
        if clients:
            keys = [key async for key in clients[0].scan_iter(match=f"{prefix}*")]
            if keys:
                await clients[0].delete(*keys)
        for client in clients:
            await client.aclose()


async def test_ten_processes_asking_at_once_get_one_holder(
    leases: tuple[Callable[[], Leases], Pass],
) -> None:
    open_leases, _ = leases
    edges = [open_leases() for _ in range(10)]
    taken = await asyncio.gather(
        *(edge.take("acme", "carrier-a", f"edge-{n}", 5.0) for n, edge in enumerate(edges))
    )
    assert sum(taken) == 1
    winner = f"edge-{taken.index(True)}"
    assert await edges[0].holder("acme", "carrier-a") == winner
    assert await edges[0].holder("acme", "carrier-b") is None
    assert await edges[0].holder("globex", "carrier-a") is None


async def test_the_holder_renews_and_a_lapsed_lease_goes_to_the_next(
    leases: tuple[Callable[[], Leases], Pass],
) -> None:
    open_leases, let_pass = leases
    first, second = open_leases(), open_leases()
    assert await first.take("acme", "carrier-a", "edge-1", 0.6)
    await let_pass(0.3)
    assert await first.take("acme", "carrier-a", "edge-1", 0.6)  # renewed
    assert not await second.take("acme", "carrier-a", "edge-2", 0.6)
    await let_pass(0.4)  # 0.7 s since the first take: the renewal still holds
    assert not await second.take("acme", "carrier-a", "edge-2", 0.6)
    await let_pass(0.4)  # edge-1 stopped renewing: lapsed
    assert await second.holder("acme", "carrier-a") is None
    assert await second.take("acme", "carrier-a", "edge-2", 5.0)
    # The old holder comes back: it can neither renew nor release the new lease.
    assert not await first.take("acme", "carrier-a", "edge-1", 5.0)
    assert not await first.release("acme", "carrier-a", "edge-1")
    assert await first.holder("acme", "carrier-a") == "edge-2"


async def test_only_the_holder_releases(leases: tuple[Callable[[], Leases], Pass]) -> None:
    open_leases, _ = leases
    edge = open_leases()
    assert not await edge.release("acme", "carrier-a", "edge-1")  # nobody holds it
    assert await edge.take("acme", "carrier-a", "edge-1", 5.0)
    assert not await edge.release("acme", "carrier-a", "edge-2")
    assert await edge.release("acme", "carrier-a", "edge-1")
    assert await edge.holder("acme", "carrier-a") is None
    assert await edge.take("acme", "carrier-a", "edge-2", 5.0)  # free again at once
