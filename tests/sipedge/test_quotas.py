"""Call quotas (sipedge.quotas): one suite for the memory store and real Redis.

Redis is ``CLOUDPBX_TEST_REDIS_URL``; each test has a tenant of its own whose keys are
deleted afterwards. The Redis-only test runs many edge processes' worth of clients at
once against one tenant's last slots.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from contracts.keys import tenant_key_pattern
from sipedge.adapters.redis_quotas import RedisQuotas
from sipedge.quotas import MemoryQuotas, Quotas, utc_day

from .conftest import REDIS_URL


@pytest.fixture
def now() -> float:
    """The test's clock starts at the real time, read when the test starts (not when the
    module is collected, minutes earlier in a full run): Redis expires a tenant's slot
    key at the last slot's lapse (EXPIREAT), by its own clock."""
    return float(int(time.time()))


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[tuple[Redis, str]]:
    client = Redis.from_url(REDIS_URL)
    tenant = f"q-{uuid.uuid4().hex[:10]}"
    await client.ping()  # unreachable: the test fails, never skips
    try:
        yield client, tenant
    finally:
        keys = [key async for key in client.scan_iter(match=tenant_key_pattern(tenant))]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest_asyncio.fixture(params=["memory", "redis"])
async def quotas(request: pytest.FixtureRequest, redis: tuple[Redis, str]) -> tuple[Quotas, str]:
    client, tenant = redis
    return (RedisQuotas(client) if request.param == "redis" else MemoryQuotas()), tenant


@pytest.mark.asyncio
async def test_a_tenant_holds_at_most_its_limit_of_slots(
    quotas: tuple[Quotas, str], now: float
) -> None:
    store, tenant = quotas
    assert await store.take_slot(tenant, "c1", 2, now + 60, now)
    assert await store.take_slot(tenant, "c2", 2, now + 60, now)
    assert not await store.take_slot(tenant, "c3", 2, now + 60, now)
    assert await store.take_slot(tenant, "c1", 2, now + 90, now)  # held already: renewed
    await store.free_slot(tenant, "c2")
    assert await store.take_slot(tenant, "c3", 2, now + 60, now)


@pytest.mark.asyncio
async def test_each_trunk_counts_its_channels_apart_from_the_tenants_calls(
    quotas: tuple[Quotas, str], now: float
) -> None:
    """A call holds a tenant slot and a channel of its trunk under one Call-ID; each
    trunk's ``maxChannels`` is its own count."""
    store, tenant = quotas
    assert await store.take_slot(tenant, "c1", 1, now + 60, now)
    assert await store.take_slot(tenant, "c1", 1, now + 60, now, trunk="carrier-a")
    assert not await store.take_slot(tenant, "c2", 1, now + 60, now, trunk="carrier-a")
    assert await store.take_slot(tenant, "c2", 1, now + 60, now, trunk="carrier-b")
    await store.renew_slot(tenant, "c1", now + 600, trunk="carrier-a")
    assert not await store.take_slot(tenant, "c2", 1, now + 700, now + 300, trunk="carrier-a")
    await store.free_slot(tenant, "c1", trunk="carrier-a")
    assert await store.take_slot(tenant, "c2", 1, now + 60, now, trunk="carrier-a")
    assert not await store.take_slot(tenant, "c3", 1, now + 60, now)  # c1 still holds it


@pytest.mark.asyncio
async def test_a_lapsed_slot_frees_itself(quotas: tuple[Quotas, str], now: float) -> None:
    """An edge process that died never frees its slot: it lapses at its time."""
    store, tenant = quotas
    assert await store.take_slot(tenant, "dead", 1, now + 60, now)
    assert not await store.take_slot(tenant, "next", 1, now + 120, now + 59)
    assert await store.take_slot(tenant, "next", 1, now + 120, now + 60)


@pytest.mark.asyncio
async def test_a_renewed_slot_lasts_until_its_new_time(
    quotas: tuple[Quotas, str], now: float
) -> None:
    store, tenant = quotas
    assert await store.take_slot(tenant, "c1", 1, now + 60, now)
    await store.renew_slot(tenant, "c1", now + 600)
    assert not await store.take_slot(tenant, "c2", 1, now + 700, now + 300)
    await store.renew_slot(tenant, "gone", now + 600)  # a freed slot is not brought back
    await store.free_slot(tenant, "c1")
    assert await store.take_slot(tenant, "c2", 1, now + 700, now + 300)


@pytest.mark.asyncio
async def test_seconds_of_the_day_add_up_per_day_and_tenant(
    quotas: tuple[Quotas, str], now: float
) -> None:
    store, tenant = quotas
    today, tomorrow = utc_day(now), utc_day(now + 86400)
    assert await store.used_s(tenant, today) == 0
    await store.add_s(tenant, today, 61)
    await store.add_s(tenant, today, 30)
    assert await store.used_s(tenant, today) == 91
    assert await store.used_s(tenant, tomorrow) == 0
    assert await store.used_s(f"{tenant}-other", today) == 0


def test_the_day_is_the_utc_day() -> None:
    assert utc_day(1_798_761_599) == "2026-12-31"
    assert utc_day(1_798_761_600) == "2027-01-01"


@pytest.mark.asyncio
async def test_many_processes_racing_for_the_last_slots_get_exactly_that_many(
    redis: tuple[Redis, str], now: float
) -> None:
    client, tenant = redis
    stores = [RedisQuotas(Redis.from_url(REDIS_URL)) for _ in range(8)]
    try:
        taken = await asyncio.gather(
            *(
                stores[n % len(stores)].take_slot(tenant, f"call-{n}", 5, now + 60, now)
                for n in range(200)
            )
        )
    finally:
        for store in stores:
            await store.redis.aclose()
    assert sum(taken) == 5
    _ = client
