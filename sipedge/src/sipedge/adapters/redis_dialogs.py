"""Calls in Redis, so any edge process can route a BYE or re-INVITE (see calls.dialogs).

One string per leg Call-ID (``contracts.keys.dialog_key``) holding the call's JSON,
with a TTL as a safety net; both keys are written in one MULTI. ``delete`` is a single
DEL of both keys whose count tells exactly one deleter that it won (a BYE arriving at
two processes at once ends and bills the call once).
"""

from __future__ import annotations

from redis.asyncio import Redis

from contracts.keys import PREFIX, dialog_key
from sipedge.dialogs import DIALOG_TTL_S, Call


class RedisDialogStore:
    def __init__(self, client: Redis) -> None:
        self._client = client

    async def put(self, call: Call, now: float) -> None:
        data = call.to_json()
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(dialog_key(call.tenant, call.a.call_id), data, ex=DIALOG_TTL_S)
            pipe.set(dialog_key(call.tenant, call.b.call_id), data, ex=DIALOG_TTL_S)
            pipe.sadd(_active_key(call.tenant), call.a.call_id)
            await pipe.execute()

    async def get(self, tenant: str, call_id: str) -> Call | None:
        data = await self._client.get(dialog_key(tenant, call_id))
        return None if data is None else Call.from_json(data)

    async def delete(self, call: Call) -> bool:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(dialog_key(call.tenant, call.a.call_id))
            pipe.delete(dialog_key(call.tenant, call.b.call_id))
            pipe.srem(_active_key(call.tenant), call.a.call_id)
            first, _, _ = await pipe.execute()
        return bool(first)

    async def count(self, tenant: str) -> int:
        return int(await self._client.scard(_active_key(tenant)))


def _active_key(tenant: str) -> str:
    return f"{PREFIX}active-calls:{tenant}"
