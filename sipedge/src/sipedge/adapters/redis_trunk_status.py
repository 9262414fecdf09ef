"""Trunk registration statuses in Redis (sipedge.registrations.StatusBoard): the lease
holder SETs each trunk's :class:`contracts.trunk_status.TrunkStatus` JSON under
``contracts.keys.trunk_status_key`` with a TTL, so the operator reads what the holder
last said, and nothing once the holder is gone."""

from __future__ import annotations

from redis.asyncio import Redis

from contracts.keys import trunk_status_key
from contracts.trunk_status import TrunkStatus


class RedisStatusBoard:
    def __init__(self, redis: Redis, *, key_prefix: str = "") -> None:
        self.redis = redis
        self._prefix = key_prefix

    async def publish(self, tenant: str, trunk: str, status: TrunkStatus, ttl_s: float) -> None:
        key = self._prefix + trunk_status_key(tenant, trunk)
        await self.redis.set(key, status.to_json(), px=max(1, round(ttl_s * 1000)))

    async def read(self, tenant: str, trunk: str) -> TrunkStatus | None:
        """What the holder last published (None: nobody holds the trunk's registration)."""
        value = await self.redis.get(self._prefix + trunk_status_key(tenant, trunk))
        return None if value is None else TrunkStatus.from_json(value)
