"""Call quotas in Redis (see sipedge.quotas): a sorted set of slots per tenant, a counter
of a trial's seconds per day.

Taking a slot is one Lua script — drop the lapsed, count, add — so two edge processes
admitting a tenant's last free slot at the same instant cannot both get it.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from contracts.keys import call_slots_key, trial_seconds_key, trunk_channels_key

#: KEYS: the slots; ARGV: now, the limit, the Call-ID, until. 1: held, 0: all taken.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(last[2])))
return 1
"""

#: KEYS: the slots; ARGV: the Call-ID, until. Renews a slot that is still held.
_RENEW = """
if redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[2], ARGV[1]) == 1 then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(last[2])))
end
return 1
"""

#: A day's usage outlives the day by one, for a call that ends after midnight.
_DAY_TTL_S = 2 * 86400


class RedisQuotas:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._take: AsyncScript = redis.register_script(_TAKE)
        self._renew: AsyncScript = redis.register_script(_RENEW)

    async def take_slot(
        self, tenant: str, call_id: str, limit: int, until: float, now: float, *, trunk: str = ""
    ) -> bool:
        key = _slots_key(tenant, trunk)
        held = await self._take(keys=[key], args=[now, limit, call_id, until])
        return bool(held)

    async def renew_slot(self, tenant: str, call_id: str, until: float, *, trunk: str = "") -> None:
        await self._renew(keys=[_slots_key(tenant, trunk)], args=[call_id, until])

    async def free_slot(self, tenant: str, call_id: str, *, trunk: str = "") -> None:
        await self.redis.zrem(_slots_key(tenant, trunk), call_id)

    async def used_s(self, tenant: str, day: str) -> int:
        value = await self.redis.get(trial_seconds_key(tenant, day))
        return int(value) if value is not None else 0

    async def add_s(self, tenant: str, day: str, seconds: int) -> None:
        key = trial_seconds_key(tenant, day)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, seconds)
            pipe.expire(key, _DAY_TTL_S)
            await pipe.execute()


def _slots_key(tenant: str, trunk: str) -> str:
    return trunk_channels_key(tenant, trunk) if trunk else call_slots_key(tenant)
