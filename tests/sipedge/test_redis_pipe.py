"""The pipelined Redis connection against a real server: order, errors, scripts, failures."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sipedge.adapters.redis_pipe import RedisPipe, pack

REDIS_URL = os.environ.get("CLOUDPBX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest_asyncio.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"cloudpbx-test:pipe:{uuid.uuid4().hex}:"
    yield name
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{name}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def pipe() -> AsyncIterator[RedisPipe]:
    opened = RedisPipe(REDIS_URL, timeout_s=2.0)
    yield opened
    await opened.close()


def test_pack_spells_a_resp_array() -> None:
    assert pack(("SET", b"k", 5, 1.5)) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n$3\r\n1.5\r\n"
    with pytest.raises(TypeError):
        pack(("SET", "k", True))


@pytest.mark.asyncio
async def test_concurrent_commands_each_get_their_own_reply(pipe: RedisPipe, prefix: str) -> None:
    replies = await asyncio.gather(
        *(pipe.execute("SET", f"{prefix}{n}", f"v{n}") for n in range(500))
    )
    assert replies == [b"OK"] * 500
    values = await asyncio.gather(*(pipe.execute("GET", f"{prefix}{n}") for n in range(500)))
    assert values == [f"v{n}".encode() for n in range(500)]
    # The URL's database was selected: redis-py on the same URL sees the keys.
    client = Redis.from_url(REDIS_URL)
    try:
        assert await client.get(f"{prefix}7") == b"v7"
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_an_error_reply_fails_only_its_command(pipe: RedisPipe, prefix: str) -> None:
    await pipe.execute("SET", f"{prefix}text", "not a number")
    results = await asyncio.gather(
        pipe.execute("INCR", f"{prefix}counter"),
        pipe.execute("INCR", f"{prefix}text"),
        pipe.execute("INCR", f"{prefix}counter"),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], ResponseError)
    assert "not an integer" in str(results[1])
    assert results[2] == 2


@pytest.mark.asyncio
async def test_evalsha_loads_a_script_the_server_forgot(pipe: RedisPipe, prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
        sha = client.register_script(script).sha
        await client.script_flush()
        assert await pipe.evalsha(sha, script, [f"{prefix}n"], [5]) == 5
        assert await pipe.evalsha(sha, script, [f"{prefix}n"], [2]) == 7
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_a_cancelled_caller_does_not_shift_the_replies(pipe: RedisPipe, prefix: str) -> None:
    await pipe.execute("SET", f"{prefix}a", "A")
    await pipe.execute("SET", f"{prefix}b", "B")
    slow = asyncio.create_task(pipe.execute("BLPOP", f"{prefix}empty-list", "0.2"))
    await asyncio.sleep(0.01)
    slow.cancel()
    assert await pipe.execute("GET", f"{prefix}b") == b"B"
    assert await pipe.execute("GET", f"{prefix}a") == b"A"


@pytest.mark.asyncio
async def test_a_killed_connection_fails_its_waiters_and_is_reopened(
    pipe: RedisPipe, prefix: str
) -> None:
    name = f"{prefix}conn"
    await pipe.execute("CLIENT", "SETNAME", name)
    waiting = asyncio.create_task(pipe.execute("BLPOP", f"{prefix}never", "5"))
    await asyncio.sleep(0.05)
    client = Redis.from_url(REDIS_URL)
    try:
        listed = await client.client_list()
        ours = [entry for entry in listed if entry.get("name") == name]
        assert len(ours) == 1
        await client.client_kill_filter(_id=ours[0]["id"])
    finally:
        await client.aclose()
    with pytest.raises(RedisConnectionError):
        await waiting
    assert await pipe.execute("PING") == b"PONG"  # a new connection


@pytest.mark.asyncio
async def test_an_unanswering_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the commands, never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    mute = RedisPipe(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
    try:
        first = asyncio.create_task(mute.execute("PING"))
        second = asyncio.create_task(mute.execute("PING"))
        for waiter in (first, second):
            with pytest.raises(RedisTimeoutError):
                await waiter
    finally:
        await mute.close()
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_an_unreachable_server_is_a_connection_error() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    nowhere = RedisPipe(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    with pytest.raises(RedisConnectionError):
        await nowhere.execute("PING")
