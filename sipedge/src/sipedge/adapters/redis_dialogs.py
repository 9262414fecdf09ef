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
"""

from __future__ import annotations

import json

from redis.asyncio import Redis

from contracts.keys import PREFIX, dialog_key
from sipedge.dialogs import DIALOG_TTL_S, Call

#: Calls whose legs this process remembers (oldest forgotten first): a bound on memory,
#: not on calls. A call it forgot is still taken, in two round trips instead of one.
KNOWN_CALLS = 65_536

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
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._put = client.register_script(_PUT)
        self._delete = client.register_script(_DELETE)
        self._take = client.register_script(_TAKE)
        #: (tenant, Call-ID of a leg) → (A-leg Call-ID, B-leg Call-ID) of calls put here.
        self._legs: dict[tuple[str, str], tuple[str, str]] = {}

    async def put(self, call: Call, now: float) -> None:
        await self._put(keys=_keys(call), args=[call.to_json(), DIALOG_TTL_S, call.a.call_id])
        self._remember(call)

    async def get(self, tenant: str, call_id: str) -> Call | None:
        data = await self._client.get(dialog_key(tenant, call_id))
        return None if data is None else Call.from_json(data)

    async def delete(self, call: Call) -> bool:
        self._forget(call.tenant, call.a.call_id, call.b.call_id)
        removed = await self._delete(keys=_keys(call), args=[call.a.call_id])
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
        reply = await self._take(keys=keys, args=[needle, a_call_id])
        if reply is None:
            return None
        taken, record = reply
        call = Call.from_json(record)
        if taken:
            return call
        return call if await self.delete(call) else None  # the guess was wrong

    async def count(self, tenant: str) -> int:
        return int(await self._client.scard(_active_key(tenant)))

    def _remember(self, call: Call) -> None:
        legs, tenant = self._legs, call.tenant
        pair = (call.a.call_id, call.b.call_id)
        while len(legs) >= 2 * KNOWN_CALLS:
            del legs[next(iter(legs))]
        legs[(tenant, pair[0])] = legs[(tenant, pair[1])] = pair

    def _forget(self, tenant: str, a_call_id: str, b_call_id: str) -> None:
        self._legs.pop((tenant, a_call_id), None)
        self._legs.pop((tenant, b_call_id), None)


def _keys(call: Call) -> list[str]:
    tenant = call.tenant
    return [
        dialog_key(tenant, call.a.call_id),
        dialog_key(tenant, call.b.call_id),
        _active_key(tenant),
    ]


def _active_key(tenant: str) -> str:
    return f"{PREFIX}active-calls:{tenant}"
