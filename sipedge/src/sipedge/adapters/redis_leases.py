"""Leases in Redis (see sipedge.leases): one key per lease, its value the holder, its TTL
the lease's time. Taking and releasing are Lua scripts (compare, then set or delete), so
two processes taking a lapsed lease at the same instant cannot both get it, and a
holder whose lease lapsed and went to another cannot release or renew the new one."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from contracts.keys import trunk_lease_key

#: KEYS: the lease; ARGV: the holder, the TTL in ms. 1: held by the holder now.
_TAKE = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

#: KEYS: the lease; ARGV: the holder. 1: released.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLeases:
    def __init__(self, redis: Redis, *, key_prefix: str = "") -> None:
        self.redis = redis
        self._prefix = key_prefix
        self._take: AsyncScript = redis.register_script(_TAKE)
        self._release: AsyncScript = redis.register_script(_RELEASE)

    def _key(self, tenant: str, name: str) -> str:
        return self._prefix + trunk_lease_key(tenant, name)

    async def take(self, tenant: str, name: str, holder: str, ttl_s: float) -> bool:
        ttl_ms = max(1, round(ttl_s * 1000))
        return bool(await self._take(keys=[self._key(tenant, name)], args=[holder, ttl_ms]))

    async def release(self, tenant: str, name: str, holder: str) -> bool:
        return bool(await self._release(keys=[self._key(tenant, name)], args=[holder]))

    async def holder(self, tenant: str, name: str) -> str | None:
        value = await self.redis.get(self._key(tenant, name))
        return None if value is None else value.decode() if isinstance(value, bytes) else str(value)
