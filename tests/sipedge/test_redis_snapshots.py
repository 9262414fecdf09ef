"""Following the operator's snapshot notices (sipedge.adapters.redis_snapshots) on the
real Redis: a handler that fails for one snapshot does not end the following."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from contracts.keys import SNAPSHOT_CHANNEL, snapshot_key, snapshot_notice
from contracts.snapshot import TenantSnapshot
from sipedge.adapters.redis_snapshots import RedisSnapshots

from .conftest import REDIS_URL


@pytest.mark.asyncio
async def test_a_failing_handler_does_not_stop_the_notices_after_it() -> None:
    client = Redis.from_url(REDIS_URL)
    first = TenantSnapshot(name=f"t{uuid.uuid4().hex[:8]}", domain="first.snapshots.test")
    second = TenantSnapshot(name=f"t{uuid.uuid4().hex[:8]}", domain="second.snapshots.test")
    handed: list[str] = []
    done = asyncio.Event()

    async def handle(snapshot: TenantSnapshot) -> None:
        handed.append(snapshot.name)
        if snapshot.name == first.name:
            raise RuntimeError("the billing store failed")
        done.set()

    subscribed = asyncio.Event()
    follower = asyncio.create_task(RedisSnapshots(client, handle).follow(subscribed))
    try:
        await asyncio.wait_for(subscribed.wait(), 5)
        for snapshot in (first, second):
            await client.set(snapshot_key(snapshot.name), snapshot.to_json())
            await client.publish(SNAPSHOT_CHANNEL, snapshot_notice(snapshot.name, 1))
        await asyncio.wait_for(done.wait(), 5)
        assert handed == [first.name, second.name]
        assert not follower.done()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await client.delete(snapshot_key(first.name), snapshot_key(second.name))
        await client.aclose()
