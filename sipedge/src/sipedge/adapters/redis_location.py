"""The location store in Redis, shared by every edge pod (RFC 3261 §10.3 over the cluster).

Implements :class:`sipedge.location.LocationStore` with ``redis.asyncio``.

Layout: the AoR hash is :func:`contracts.keys.bindings_key`, the key layout shared by
every process; the tenant's two sorted sets sit beside it under the same tenant hash tag
(one Redis Cluster slot per tenant, so one MULTI may touch all three) and are named here
until ``contracts.keys`` names them. ``key_prefix`` (empty in production) is prepended to
every key, so that each test has a namespace of its own.

* ``cloudpbx:v1:{<tenant>}:bindings:<aor>`` — hash, field = contact URI, value = the
  binding as JSON (its absolute ``expires_at`` included). The key's TTL is the longest
  binding's remaining time, so an abandoned AoR disappears by itself.
* ``cloudpbx:v1:{<tenant>}:bindings-index`` — sorted set of ``[aor, contact]`` scored by
  ``expires_at``: ``count`` (ZCOUNT above ``now``) and ``remove_all`` read it.
* ``cloudpbx:v1:{<tenant>}:bindings-nat`` — the same for bindings needing NAT keep-alives.

Atomicity: ``update`` uses optimistic locking, WATCH on the AoR hash, read, run the
(pure, Python) registrar decision, then MULTI/EXEC the writes; EXEC fails if another
process touched the hash meanwhile and the attempt is repeated with fresh data (up to
``max_attempts``, then :class:`~sipedge.location.LocationBusy`). A Lua script was not
chosen because the decision is Python code that must see the bindings it replaces.
The two sorted sets are written in the same MULTI; their entries belong to the AoR
being written, so concurrent writers of other AoRs cannot conflict on them.

Expiry: hash fields carry ``expires_at`` and are filtered on every read, so an expired
binding is never returned; an update deletes the AoR's expired fields and trims expired
index entries (ZREMRANGEBYSCORE); key TTLs (relative, so an injected clock works) remove
what nobody touches again. Undecodable field values count as absent and are deleted by
the next update of their AoR.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from contracts import keys
from sipedge.location import Binding, D, LocationBusy, Source, merged, ordered

_DELETE_BATCH = 500


@dataclass(frozen=True, slots=True)
class _Keys:
    """The location keys: the shared layout of ``contracts.keys``, under ``prefix``."""

    prefix: str

    def aor(self, tenant: str, aor: str) -> str:
        return self.prefix + keys.bindings_key(tenant, aor)

    def index(self, tenant: str) -> str:
        return self.prefix + _tenant_part(tenant) + "bindings-index"

    def nat(self, tenant: str) -> str:
        return self.prefix + _tenant_part(tenant) + "bindings-nat"


def _tenant_part(tenant: str) -> str:
    """``cloudpbx:v1:{<escaped tenant>}:`` (to move into contracts.keys with the two sets)."""
    return keys.tenant_key_pattern(tenant).removesuffix("*")


class RedisLocationStore:
    """Bindings in Redis; any edge process may serve any REGISTER of any AoR."""

    def __init__(self, client: Redis, *, key_prefix: str = "", max_attempts: int = 64) -> None:
        self._client = client
        self._keys = _Keys(key_prefix)
        self._max_attempts = max_attempts

    async def lookup(self, tenant: str, aor: str, now: float) -> list[Binding]:
        raw = await self._client.hgetall(self._keys.aor(tenant, aor))
        return ordered(b for b in _decode_all(raw.values()) if b.is_live(now))

    async def update(
        self, tenant: str, aor: str, decide: Callable[[list[Binding]], D], now: float
    ) -> tuple[D, list[Binding]]:
        async with self._client.pipeline(transaction=True) as pipe:
            for _ in range(self._max_attempts):
                try:
                    return await self._attempt(pipe, tenant, aor, decide, now)
                except WatchError:
                    continue
        raise LocationBusy(f"{aor} of {tenant} kept changing during {self._max_attempts} tries")

    async def _attempt(
        self,
        pipe: Pipeline,
        tenant: str,
        aor: str,
        decide: Callable[[list[Binding]], D],
        now: float,
    ) -> tuple[D, list[Binding]]:
        """One WATCH / read / decide / MULTI / EXEC round; WatchError when overtaken."""
        key = self._keys.aor(tenant, aor)
        await pipe.watch(key)
        raw = await pipe.hgetall(key)
        live = ordered(b for b in _decode_all(raw.values()) if b.is_live(now))
        decision = decide(list(live))
        after = merged(live, decision.changes, now)
        gone = sorted({_text(field) for field in raw} - {b.contact for b in after})
        if not decision.changes and not gone:
            return decision, after  # leaving the pipeline's context sends UNWATCH
        pipe.multi()  # type: ignore[no-untyped-call]  # untyped in redis-py 8.1
        self._queue_aor(pipe, key, decision.changes.upserts, gone, after, now)
        self._queue_indexes(pipe, tenant, aor, decision.changes.upserts, gone, now)
        await pipe.execute()
        return decision, after

    def _queue_aor(
        self,
        pipe: Pipeline,
        key: str,
        upserts: Iterable[Binding],
        gone: list[str],
        after: list[Binding],
        now: float,
    ) -> None:
        """The AoR hash: new and refreshed fields, removed and expired ones, its TTL."""
        if not after:
            pipe.delete(key)
            return
        if gone:
            pipe.hdel(key, *gone)
        items = [text for b in upserts for text in (b.contact, _encode(b))]
        if items:
            pipe.hset(key, items=items)
        pipe.pexpire(key, _ttl_ms(max(b.expires_at for b in after), now))

    def _queue_indexes(
        self,
        pipe: Pipeline,
        tenant: str,
        aor: str,
        upserts: tuple[Binding, ...],
        gone: list[str],
        now: float,
    ) -> None:
        """The tenant's index and NAT sets: this AoR's entries, and expired ones trimmed."""
        needs = [b for b in upserts if b.needs_keepalive]
        not_nat = gone + [b.contact for b in upserts if not b.needs_keepalive]
        for zset, added, removed in (
            (self._keys.index(tenant), list(upserts), gone),
            (self._keys.nat(tenant), needs, not_nat),
        ):
            if removed:
                pipe.zrem(zset, *(_member(aor, contact) for contact in removed))
            if added:
                pipe.zadd(zset, {_member(aor, b.contact): b.expires_at for b in added})
                longest_ms = _ttl_ms(max(b.expires_at for b in added), now)
                pipe.pexpire(zset, longest_ms, nx=True)  # a new set has no TTL for GT
                pipe.pexpire(zset, longest_ms, gt=True)
            pipe.zremrangebyscore(zset, "-inf", now)

    async def remove_all(self, tenant: str) -> None:
        members = await self._client.zrange(self._keys.index(tenant), 0, -1)
        aors = sorted({_unmember(member)[0] for member in members})
        keys = [self._keys.aor(tenant, aor) for aor in aors]
        keys += [self._keys.index(tenant), self._keys.nat(tenant)]
        for start in range(0, len(keys), _DELETE_BATCH):
            await self._client.delete(*keys[start : start + _DELETE_BATCH])

    async def count(self, tenant: str, now: float) -> int:
        return int(await self._client.zcount(self._keys.index(tenant), f"({now!r}", "+inf"))

    async def nat_bindings(self, tenant: str, now: float, limit: int) -> list[tuple[str, Binding]]:
        members = await self._client.zrangebyscore(
            self._keys.nat(tenant), f"({now!r}", "+inf", start=0, num=limit
        )
        pairs = [_unmember(member) for member in members]
        async with self._client.pipeline(transaction=False) as pipe:
            for aor, contact in pairs:
                pipe.hget(self._keys.aor(tenant, aor), contact)
            values: list[Any] = await pipe.execute()
        due: list[tuple[str, Binding]] = []
        for (aor, _), value in zip(pairs, values, strict=True):
            binding = None if value is None else _decode(value)
            if binding is not None and binding.is_live(now) and binding.needs_keepalive:
                due.append((aor, binding))
        return sorted(due, key=lambda pair: (pair[1].expires_at, pair[0], pair[1].contact))


def _ttl_ms(expires_at: float, now: float) -> int:
    """A key TTL reaching ``expires_at``, relative to ``now`` (so any clock works)."""
    return max(1, math.ceil((expires_at - now) * 1000))


def _member(aor: str, contact: str) -> str:
    return json.dumps([aor, contact], separators=(",", ":"))


def _unmember(member: object) -> tuple[str, str]:
    """The ``(aor, contact)`` of a sorted-set member written by :func:`_member`."""
    if not isinstance(member, bytes | str):
        raise TypeError(f"unexpected sorted-set member {member!r}")
    aor, contact = json.loads(member)
    return _str(aor), _str(contact)


def _encode(binding: Binding) -> str:
    source = binding.source
    return json.dumps(
        {
            "contact": binding.contact,
            "expires_at": binding.expires_at,
            "call_id": binding.call_id,
            "cseq": binding.cseq,
            "source": [source.transport, source.ip, source.port, source.edge],
            "q_milli": binding.q_milli,
            "instance": binding.instance,
            "reg_id": binding.reg_id,
            "user_agent": binding.user_agent,
            "behind_nat": binding.behind_nat,
        },
        separators=(",", ":"),
    )


def _decode(value: bytes | str) -> Binding | None:
    """A binding from its JSON, or ``None`` when the stored value is not one."""
    try:
        data = json.loads(value)
        transport, ip, port, edge = data["source"]
        return Binding(
            contact=_str(data["contact"]),
            expires_at=float(data["expires_at"]),
            call_id=_str(data["call_id"]),
            cseq=int(data["cseq"]),
            source=Source(_str(transport), _str(ip), int(port), _str(edge)),
            q_milli=int(data["q_milli"]),
            instance=_optional_str(data["instance"]),
            reg_id=None if data["reg_id"] is None else int(data["reg_id"]),
            user_agent=_optional_str(data["user_agent"]),
            behind_nat=data["behind_nat"] is True,
        )
    except (ValueError, TypeError, KeyError):
        return None


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _optional_str(value: object) -> str | None:
    return None if value is None else _str(value)


def _text(value: bytes | str) -> str:
    """A hash field name, whether the client decodes responses or not."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _decode_all(values: Iterable[bytes | str]) -> list[Binding]:
    return [binding for binding in map(_decode, values) if binding is not None]
