"""Fixtures for the location stores: one in process memory, one on a real Redis server.

``store`` runs a test once per implementation. The Redis side connects to
``CLOUDPBX_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``), gives each test a
key prefix of its own, deletes exactly the keys under that prefix afterwards (never
FLUSHDB) and FAILS, never skips, when the server cannot be reached: a store suite that
quietly ran against memory only would prove nothing about the cluster.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sipedge.adapters.memory_location import MemoryLocationStore
from sipedge.adapters.redis_location import RedisLocationStore
from sipedge.adapters.redis_pipe import RedisPipe
from sipedge.location import LocationStore

REDIS_URL = os.environ.get("CLOUDPBX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class RedisStores:
    """Opens Redis stores that share one key prefix, each on its own connection pool."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.clients: list[Redis] = []
        self.pipes: list[RedisPipe] = []
        self.reachable = False

    async def open(self) -> RedisLocationStore:
        """A store on a new client: two of them act like two edge processes."""
        client = Redis.from_url(REDIS_URL)
        self.clients.append(client)
        try:
            await client.ping()
        except (RedisError, OSError) as error:
            pytest.fail(
                f"Redis at {REDIS_URL} is unreachable ({type(error).__name__}: {error}); "
                "start it or set CLOUDPBX_TEST_REDIS_URL"
            )
        self.reachable = True
        pipe = RedisPipe(REDIS_URL)  # the edge's hot path: the suite runs through it
        self.pipes.append(pipe)
        return RedisLocationStore(client, pipe=pipe, key_prefix=self.prefix)

    async def keys(self) -> list[bytes]:
        """Every key this test wrote (the prefix holds no glob characters)."""
        return sorted([key async for key in self.clients[0].scan_iter(match=f"{self.prefix}*")])

    async def close(self) -> None:
        try:
            if self.reachable:
                keys = await self.keys()
                if keys:
                    await self.clients[0].delete(*keys)
        finally:
            for pipe in self.pipes:
                await pipe.close()
            for client in self.clients:
                await client.aclose()


@pytest_asyncio.fixture
async def redis_stores() -> AsyncIterator[RedisStores]:
    stores = RedisStores(f"cloudpbx-test:{uuid.uuid4().hex}:")
    try:
        yield stores
    finally:
        await stores.close()


@pytest_asyncio.fixture
async def redis_store(redis_stores: RedisStores) -> LocationStore:
    return await redis_stores.open()


@pytest.fixture
def memory_store() -> LocationStore:
    return MemoryLocationStore()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> LocationStore:
    """Each location store in turn: the same suite must pass against both."""
    chosen: LocationStore = request.getfixturevalue(f"{request.param}_store")
    return chosen
