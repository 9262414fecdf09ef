"""Publishing a snapshot to the edges through the real Redis: one atomic script that
versions the content, keeps the domain index and sends the notice (apply.py's docstring)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from cloudpbx_operator.apply import HostTaken, NameTaken, Published, Publisher, publish_text
from contracts.keys import SNAPSHOT_CHANNEL, domain_index_key, snapshot_key, snapshot_notice
from contracts.snapshot import TenantSnapshot

REDIS_URL = os.environ.get("CLOUDPBX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def tenant(name: str, *aliases: str) -> TenantSnapshot:
    return TenantSnapshot(name=name, domain=f"{name}.example", aliases=aliases)


@pytest_asyncio.fixture
async def names() -> AsyncIterator[list[str]]:
    """Tenant names unique to the test; their keys and hosts are removed afterwards."""
    made = [f"t{uuid.uuid4().hex[:10]}" for _ in range(2)]
    yield made
    redis = Redis.from_url(REDIS_URL)
    for name in made:
        await redis.delete(snapshot_key(name))
        for host in (f"{name}.example", f"a.{name}.example", f"b.{name}.example"):
            await redis.hdel(domain_index_key(), host)
    await redis.aclose()


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def test_the_text_sent_stops_right_before_the_versions_digits() -> None:
    snapshot = replace(tenant("acme"), version=7)
    head = publish_text(snapshot)
    assert head + "7}" == snapshot.to_json()
    assert head + "12}" == replace(snapshot, version=12).to_json()


@pytest.mark.asyncio
async def test_versions_grow_with_the_content_and_the_stored_json_is_the_snapshot(
    redis: Redis, names: list[str]
) -> None:
    name = names[0]
    publisher = Publisher(redis)
    pubsub = redis.pubsub()
    await pubsub.subscribe(SNAPSHOT_CHANNEL)

    first = tenant(name, f"a.{name}.example")
    assert await publisher.publish(first) == Published(1, changed=True)
    assert await publisher.publish(first) == Published(1, changed=False)  # same content
    assert await redis.get(snapshot_key(name)) == first.to_json().encode()

    second = tenant(name, f"b.{name}.example")
    assert await publisher.publish(second) == Published(2, changed=True)
    stored = await publisher.stored(name)
    assert stored == replace(second, version=2)
    index = await redis.hgetall(domain_index_key())
    assert index.get(f"b.{name}.example".encode()) == name.encode()
    assert f"a.{name}.example".encode() not in index  # the alias it no longer has
    assert index.get(f"{name}.example".encode()) == name.encode()

    notices = [await next_message(pubsub) for _ in range(2)]
    assert notices == [snapshot_notice(name, 1), snapshot_notice(name, 2)]
    await pubsub.aclose()  # type: ignore[no-untyped-call]


@pytest.mark.asyncio
async def test_a_host_of_another_tenant_is_refused_and_nothing_is_written(
    redis: Redis, names: list[str]
) -> None:
    owner, intruder = names
    publisher = Publisher(redis)
    await publisher.publish(tenant(owner))
    taken = await publisher.publish(tenant(intruder, f"{owner}.example"))
    assert taken == HostTaken(f"{owner}.example", owner)
    assert await redis.get(snapshot_key(intruder)) is None
    assert await redis.hget(domain_index_key(), f"{owner}.example") == owner.encode()


@pytest.mark.asyncio
async def test_a_name_is_one_tenants_until_it_is_deleted(redis: Redis, names: list[str]) -> None:
    """Keys go by name and names by Tenant (UID): a Tenant of the same name elsewhere is
    refused, whether it comes enabled or disabled (its deletion); once the owner is
    deleted (disabled), a new Tenant takes the name over."""
    name = names[0]
    publisher = Publisher(redis)
    owner = replace(tenant(name), uid="uid-owner")
    assert await publisher.publish(owner) == Published(1, changed=True)
    stored = await redis.get(snapshot_key(name))
    other = replace(tenant(name, f"a.{name}.example"), uid="uid-other")
    assert await publisher.publish(other) == NameTaken("uid-owner")
    assert await publisher.publish(replace(other, enabled=False)) == NameTaken("uid-owner")
    assert await redis.get(snapshot_key(name)) == stored
    assert await redis.hget(domain_index_key(), f"a.{name}.example") is None
    assert await publisher.stored_uid(name) == "uid-owner"

    assert await publisher.publish(replace(owner, enabled=False)) == Published(2, changed=True)
    assert await publisher.publish(replace(other, enabled=False)) == NameTaken("uid-owner")
    assert await publisher.publish(other) == Published(3, changed=True)
    assert await publisher.stored_uid(name) == "uid-other"
    assert await publisher.publish(replace(owner, enabled=False)) == NameTaken("uid-other")


@pytest.mark.asyncio
async def test_concurrent_publishers_of_one_content_make_one_version(
    redis: Redis, names: list[str]
) -> None:
    publishers = [Publisher(redis) for _ in range(5)]
    results = await asyncio.gather(*(p.publish(tenant(names[0])) for p in publishers))
    assert sorted(r.changed for r in results if isinstance(r, Published)) == [False] * 4 + [True]
    assert {r.version for r in results if isinstance(r, Published)} == {1}


async def next_message(pubsub: object) -> str:
    for _ in range(50):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)  # type: ignore[attr-defined]
        if message is not None:
            return str(message["data"].decode())
    raise AssertionError("no notice")
