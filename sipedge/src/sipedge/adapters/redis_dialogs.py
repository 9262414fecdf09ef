"""Calls in Redis, so any edge process can route a BYE or re-INVITE (see sipedge.dialogs).

One string per leg Call-ID (``contracts.keys.dialog_key``) holding the call's JSON, with
a TTL as a safety net, and the tenant's set of active calls (for the gauge). Writes are
Lua scripts: atomic like a MULTI, at the client cost of one command instead of five.
``delete`` removes both keys in one script whose count tells exactly one deleter that
it won (a BYE arriving at two processes at once ends and bills the call once).

``take`` (a BYE) must find the call from one leg's Call-ID and remove both legs' keys.
The process that stored a call remembers which two Call-IDs belong together (they never
change), so it does both in one script that checks the stored record names that other
leg; any other process, or a wrong guess, reads first and deletes second.

With a :class:`~sipedge.adapters.redis_pipe.RedisPipe` (the same server as the client),
the per-call commands go over it, as the location store's do; the client otherwise.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from contracts.keys import active_calls_key, dialog_key
from sipedge.adapters.memo import Generations
from sipedge.adapters.redis_pipe import Arg, RedisPipe
from sipedge.dialogs import DIALOG_TTL_S, Call

#: Calls whose legs this process remembers: two generations of at most this many
#: Call-IDs each (~200 bytes apiece; see sipedge.adapters.memo). A bound on
#: memory, not on calls: a call it forgot is still taken, in two round trips.
KNOWN_CALLS = 16_384

#: KEYS: both legs' dialog keys, the active set; ARGV: the JSON, the TTL, the A-leg Call-ID.
_PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
"""

#: KEYS: both legs' dialog keys, the active set; ARGV: the A-leg Call-ID. Returns how many
#: dialog keys were removed: 0 for every caller but the first.
_DELETE = """
local removed = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return removed
"""

#: KEYS: this leg's dialog key, the other leg's (a guess), the active set; ARGV: how the
#: record names the other leg (its JSON ``"call_id":"..."`` member), the A-leg Call-ID.
#: Returns nothing when there is no record, {1, record} when it took the call, and
#: {0, record} (nothing removed) when the record names no such other leg.
_TAKE = """
local record = redis.call('GET', KEYS[1])
if not record then return false end
if not string.find(record, ARGV[1], 1, true) then return {0, record} end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
return {1, record}
"""


class RedisDialogStore:
    def __init__(self, client: Redis, *, pipe: RedisPipe | None = None) -> None:
        self._client = client
        self._pipe = pipe
        self._put = client.register_script(_PUT)
        self._delete = client.register_script(_DELETE)
        self._take = client.register_script(_TAKE)
        #: (tenant, Call-ID of a leg) → (A-leg Call-ID, B-leg Call-ID) of calls put here.
        self._legs: Generations[tuple[str, str], tuple[str, str]] = Generations(KNOWN_CALLS)

    async def put(self, call: Call, now: float) -> None:
        args: list[Arg] = [call.to_json(), DIALOG_TTL_S, call.a.call_id]
        await self._run(self._put, _PUT, _keys(call), args)
        self._remember(call)

    async def get(self, tenant: str, call_id: str) -> Call | None:
        key = dialog_key(tenant, call_id)
        if self._pipe is not None:
            data = await self._pipe.execute("GET", key)
        else:
            data = await self._client.get(key)
        return None if data is None else Call.from_json(data)

    async def delete(self, call: Call) -> bool:
        self._forget(call.tenant, call.a.call_id, call.b.call_id)
        removed = await self._run(self._delete, _DELETE, _keys(call), [call.a.call_id])
        return bool(removed)

    async def take(self, tenant: str, call_id: str) -> Call | None:
        legs = self._legs.get((tenant, call_id))
        if legs is None:
            call = await self.get(tenant, call_id)
            return call if call is not None and await self.delete(call) else None
        self._forget(tenant, *legs)
        a_call_id, b_call_id = legs
        other = b_call_id if call_id == a_call_id else a_call_id
        keys = [dialog_key(tenant, call_id), dialog_key(tenant, other), _active_key(tenant)]
        needle = f'"call_id":{json.dumps(other)}'
        reply = await self._run(self._take, _TAKE, keys, [needle, a_call_id])
        if reply is None:
            return None
        taken, record = reply
        call = Call.from_json(record)
        if taken:
            return call
        return call if await self.delete(call) else None  # the guess was wrong

    async def count(self, tenant: str) -> int:
        return int(await self._client.scard(_active_key(tenant)))

    async def calls(self, tenant: str) -> list[Call]:
        call_ids = sorted(await self._client.smembers(_active_key(tenant)))
        if not call_ids:
            return []
        keys = [dialog_key(tenant, _text(call_id)) for call_id in call_ids]
        records = await self._client.mget(keys)
        return [Call.from_json(record) for record in records if record is not None]

    async def _run(self, script: AsyncScript, source: str, keys: list[str], args: list[Arg]) -> Any:
        if self._pipe is not None:
            return await self._pipe.evalsha(script.sha, source, keys, args)
        return await script(keys=keys, args=args)

    def _remember(self, call: Call) -> None:
        pair = (call.a.call_id, call.b.call_id)
        self._legs.put((call.tenant, pair[0]), pair)
        self._legs.put((call.tenant, pair[1]), pair)

    def _forget(self, tenant: str, a_call_id: str, b_call_id: str) -> None:
        self._legs.pop((tenant, a_call_id))
        self._legs.pop((tenant, b_call_id))


def _keys(call: Call) -> list[str]:
    tenant = call.tenant
    return [
        dialog_key(tenant, call.a.call_id),
        dialog_key(tenant, call.b.call_id),
        _active_key(tenant),
    ]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _active_key(tenant: str) -> str:
    return active_calls_key(tenant)  # under the tenant's hash tag, beside its dialogs
