"""Tenant snapshots from Redis: what the operator publishes, as the edges of a cluster
read it (DESIGN "Stores": routing snapshots + pub/sub).

The operator stores each tenant's :class:`~contracts.snapshot.TenantSnapshot` JSON under
:func:`contracts.keys.snapshot_key`, lists every host it serves in
:func:`contracts.keys.domain_index_key`, and announces a new version on
:data:`contracts.keys.SNAPSHOT_CHANNEL` (:func:`contracts.keys.snapshot_notice`). An edge
loads them all at start (:meth:`RedisSnapshots.load_all`), then follows the notices
(:meth:`RedisSnapshots.follow`): each one names a tenant, whose snapshot is read and
handed on; a failure of what follows it is logged and the next notice is followed. After
a lost connection it subscribes again and reads every snapshot again,
since notices sent meanwhile are gone (pub/sub keeps nothing). A snapshot that does not
decode is logged with its path and skipped: the edge keeps what it served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from contracts.keys import SNAPSHOT_CHANNEL, domain_index_key, parse_snapshot_notice, snapshot_key
from contracts.snapshot import SnapshotError, TenantSnapshot

log = logging.getLogger("sipedge.snapshots")

#: How long to wait before subscribing again after Redis failed.
RETRY_S = 1.0

OnSnapshot = Callable[[TenantSnapshot], Awaitable[None]]


class RedisSnapshots:
    def __init__(self, redis: Redis, on_snapshot: OnSnapshot) -> None:
        self.redis = redis
        self.on_snapshot = on_snapshot

    async def load_all(self) -> list[TenantSnapshot]:
        """Every tenant the domain index names, decoded (broken ones left out)."""
        names = sorted({_text(name) for name in await self.redis.hvals(domain_index_key())})
        if not names:
            return []
        records = await self.redis.mget([snapshot_key(name) for name in names])
        snapshots = []
        for name, record in zip(names, records, strict=True):
            snapshot = _decoded(name, record)
            if snapshot is not None:
                snapshots.append(snapshot)
        return snapshots

    async def load(self, tenant: str) -> TenantSnapshot | None:
        return _decoded(tenant, await self.redis.get(snapshot_key(tenant)))

    async def follow(self, ready: asyncio.Event | None = None) -> None:
        """Hand on each announced snapshot, for ever; ``ready`` is set once subscribed."""
        resubscribed = False
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(SNAPSHOT_CHANNEL)
                    if ready is not None:
                        ready.set()
                    if resubscribed:  # notices sent while we were away are lost
                        for snapshot in await self.load_all():
                            await self._hand_on(snapshot)
                    resubscribed = True
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._noticed(message.get("data"))
            except (RedisError, OSError) as error:
                log.warning("snapshot notices interrupted (%s); subscribing again", error)
                await asyncio.sleep(RETRY_S)

    async def _noticed(self, data: object) -> None:
        try:
            tenant, version = parse_snapshot_notice(data if isinstance(data, bytes | str) else b"")
        except ValueError as error:
            log.warning("ignored a malformed snapshot notice: %s", error)
            return
        snapshot = await self.load(tenant)
        if snapshot is None:
            return
        if snapshot.version < version:
            log.info(
                "tenant %s: notice of version %d, store holds %d", tenant, version, snapshot.version
            )
        await self._hand_on(snapshot)

    async def _hand_on(self, snapshot: TenantSnapshot) -> None:
        """What follows a snapshot (ending a disabled tenant's calls, provisioning its
        account) may fail on a store of its own: logged, and the notices after it are
        still followed."""
        try:
            await self.on_snapshot(snapshot)
        except Exception:
            name, version = snapshot.name, snapshot.version
            log.exception("tenant %s version %d: what follows it failed", name, version)


def _decoded(tenant: str, record: bytes | str | None) -> TenantSnapshot | None:
    if record is None:
        return None
    try:
        return TenantSnapshot.from_json(record)
    except SnapshotError as error:
        log.error("tenant %s: its snapshot is not served: %s", tenant, error)
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
