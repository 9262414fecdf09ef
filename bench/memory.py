"""Memory per registered binding and per active call, in Redis and in process memory.

Writes N bindings through the location stores' own ``update`` (the registrar's path) and
M answered calls through the dialog stores' ``put``, and reports the growth: Redis
``used_memory`` for the cluster stores (database 13, flushed before and after), and
Python allocations (tracemalloc) for the embedded memory stores.

Run: ``.venv/bin/python bench/memory.py [--bindings N] [--calls M]``. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tracemalloc
from dataclasses import dataclass

from redis.asyncio import Redis

from sipedge.adapters.memory_location import MemoryLocationStore
from sipedge.adapters.redis_dialogs import RedisDialogStore
from sipedge.adapters.redis_location import RedisLocationStore
from sipedge.dialogs import Call, DialogStore, Leg, MemoryDialogStore
from sipedge.location import Binding, Changes, LocationStore, Source

NOW = 1_800_000_000.0
REDIS_URL = "redis://127.0.0.1:6379/13"


@dataclass(frozen=True, slots=True)
class Decided:
    changes: Changes


def binding(i: int) -> Binding:
    """A realistic binding: a NATed UDP phone with a private Contact."""
    return Binding(
        contact=f"sip:{100000 + i}@10.0.{i % 250}.{i % 200}:5060;transport=udp",
        expires_at=NOW + 3600,
        call_id=f"{secrets.token_hex(8)}@10.0.0.1",
        cseq=2,
        source=Source("UDP", "198.51.100.7", 40000 + i % 20000, "edge-0/udp:0.0.0.0:5060"),
        behind_nat=True,
        user_agent="baresip v1.0.0",
    )


def leg(i: int) -> Leg:
    return Leg(
        call_id=f"{secrets.token_hex(12)}@10.0.0.1",
        local_tag=secrets.token_hex(6),
        remote_tag=secrets.token_hex(6),
        local_uri=f"sip:{100000 + i}@bench.cloudpbx.test",
        remote_uri=f"sip:{100001 + i}@bench.cloudpbx.test",
        remote_target=f"sip:{100000 + i}@198.51.100.7:40312;transport=udp",
        route_set=(),
        local_cseq=1,
        remote_cseq=2,
        transport="UDP",
        host="198.51.100.7",
        port=40312,
    )


async def fill(location: LocationStore, dialogs: DialogStore, bindings: int, calls: int) -> None:
    for i in range(bindings):
        decided = Decided(Changes(upserts=(binding(i),)))

        def decide(_existing: list[Binding], decided: Decided = decided) -> Decided:
            return decided

        await location.update("bench", f"sip:{100000 + i}@bench.cloudpbx.test", decide, NOW)
    for i in range(calls):
        await dialogs.put(Call("bench", leg(i), leg(i), NOW), NOW)


async def in_redis(bindings: int, calls: int) -> tuple[float, float]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.flushdb()
        base = (await client.info("memory"))["used_memory"]
        await fill(RedisLocationStore(client), RedisDialogStore(client), bindings, 0)
        middle = (await client.info("memory"))["used_memory"]
        await fill(RedisLocationStore(client), RedisDialogStore(client), 0, calls)
        end = (await client.info("memory"))["used_memory"]
        return (middle - base) / bindings, (end - middle) / calls
    finally:
        await client.flushdb()
        await client.aclose()


async def in_process(bindings: int, calls: int) -> tuple[float, float]:
    tracemalloc.start()
    location, dialogs = MemoryLocationStore(), MemoryDialogStore()
    base = tracemalloc.get_traced_memory()[0]
    await fill(location, dialogs, bindings, 0)
    middle = tracemalloc.get_traced_memory()[0]
    await fill(location, dialogs, 0, calls)
    end = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (middle - base) / bindings, (end - middle) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bindings", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=2_000)
    args = parser.parse_args()
    redis_binding, redis_call = asyncio.run(in_redis(args.bindings, args.calls))
    memory_binding, memory_call = asyncio.run(in_process(args.bindings, args.calls))
    print(f"redis:  {redis_binding:7.0f} bytes per binding, {redis_call:7.0f} bytes per call")
    print(f"memory: {memory_binding:7.0f} bytes per binding, {memory_call:7.0f} bytes per call")
    print(
        f"RESULT memory binding_redis={redis_binding:.0f}B call_redis={redis_call:.0f}B "
        f"binding_memory={memory_binding:.0f}B call_memory={memory_call:.0f}B"
    )


if __name__ == "__main__":
    main()
