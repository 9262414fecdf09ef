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

Atomicity: ``update`` is optimistic and usually one round trip. It runs the (pure,
Python) registrar decision on what it believes the AoR hash holds, then sends the writes
to a Lua script (:data:`_COMPARE_AND_APPLY`, by EVALSHA) that applies them only if the
hash holds exactly that; otherwise the script writes nothing and replies with what the
hash does hold, and the decision is made again on it (up to ``max_attempts`` times,
then :class:`~sipedge.location.LocationBusy`). The first belief is what this process
last wrote or saw there, or an empty hash for an AoR it has not met (a new phone; a
phone usually comes back to the same process). Comparing the content, not a version
field, keeps the layout as it was and catches any other writer; a change undone in
between is harmless, as the decision depends on the content alone. The decision stays
in Python because it must see the bindings it replaces; only the check and the writes
run in Redis. The two sorted sets are written by the same script; their entries belong
to the AoR being written, so concurrent writers of other AoRs cannot conflict on them.
(This replaced WATCH / HGETALL / MULTI / EXEC: a dozen commands, each packed, sent and
parsed by redis-py at several thousand instructions an argument, which cost the edge
more CPU than the rest of a REGISTER.)

Expiry: hash fields carry ``expires_at`` and are filtered on every read, so an expired
binding is never returned; an update deletes the AoR's expired fields and trims expired
index entries (ZREMRANGEBYSCORE); key TTLs (relative, so an injected clock works) remove
what nobody touches again. Undecodable field values count as absent and are deleted by
the next update of their AoR.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from contracts import keys
from sipedge.adapters.memo import Generations
from sipedge.adapters.redis_pipe import RedisPipe
from sipedge.location import Binding, D, LocationBusy, Source, merged, ordered

_DELETE_BATCH = 500
#: ``json.dumps(..., separators=(",", ":"))``, with no encoder built per call and no
#: circular-reference bookkeeping (what it encodes is flat): half the cost.
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)
_json_string = json.encoder.encode_basestring_ascii


@dataclass(frozen=True, slots=True)
class _Keys:
    """The location keys: the shared layout of ``contracts.keys``, under ``prefix``."""

    prefix: str

    def aor(self, tenant: str, aor: str) -> str:
        return self.prefix + _bindings_key(tenant, aor)

    def index(self, tenant: str) -> str:
        return self.prefix + _index_key(tenant)

    def nat(self, tenant: str) -> str:
        return self.prefix + _nat_key(tenant)


@functools.lru_cache(maxsize=8192)
def _bindings_key(tenant: str, aor: str) -> str:
    """:func:`contracts.keys.bindings_key`, remembered: escaping costs more than a lookup."""
    return keys.bindings_key(tenant, aor)


@functools.lru_cache(maxsize=1024)
def _index_key(tenant: str) -> str:
    return keys.bindings_index_key(tenant)


@functools.lru_cache(maxsize=1024)
def _nat_key(tenant: str) -> str:
    return keys.nat_bindings_key(tenant)


#: KEYS: the AoR hash, then the other keys the writes touch (the tenant's sorted sets).
#: ARGV[1]: the writes as a JSON list of commands ``[name, index into KEYS, args...]``;
#: then the fields and values the caller believes the hash holds. If it holds exactly
#: those, applies the writes and returns 1; else writes nothing and returns what it holds
#: (HGETALL's reply), so that the caller can decide again without another round trip.
#: (The writes are one JSON argument because the client packs each argument in Python.)
_COMPARE_AND_APPLY = """
local current = redis.call('HGETALL', KEYS[1])
if #current ~= #ARGV - 1 then return current end
local believed = {}
for i = 2, #ARGV, 2 do believed[ARGV[i]] = ARGV[i + 1] end
for i = 1, #current, 2 do
  if believed[current[i]] ~= current[i + 1] then return current end
end
for _, command in ipairs(cjson.decode(ARGV[1])) do
  command[2] = KEYS[command[2]]
  redis.call(unpack(command))
end
return 1
"""

# Indexes into the script's KEYS.
_AOR, _INDEX, _NAT = 1, 2, 3

#: AoR hashes whose content a store remembers (its guess for their next update).
KNOWN_AORS = 4096

_Content = dict[bytes, bytes]


class _Writes:
    """The commands for :data:`_COMPARE_AND_APPLY`; every argument is text, numbers in
    the client's own spelling (``repr``), so that Lua never reformats one."""

    def __init__(self) -> None:
        self.commands: list[list[str | int]] = []

    def add(self, command: str, key: int, *args: str) -> None:
        self.commands.append([command, key, *args])

    def argv(self, believed: _Content) -> list[str | bytes]:
        argv: list[str | bytes] = [_JSON.encode(self.commands)]
        for field, value in believed.items():
            argv += (field, value)
        return argv


class RedisLocationStore:
    """Bindings in Redis; any edge process may serve any REGISTER of any AoR."""

    def __init__(
        self,
        client: Redis,
        *,
        pipe: RedisPipe | None = None,
        key_prefix: str = "",
        max_attempts: int = 64,
    ) -> None:
        """``pipe`` (the same server as ``client``) carries the per-request commands."""
        self._client = client
        self._pipe = pipe
        self._keys = _Keys(key_prefix)
        self._max_attempts = max_attempts
        self._compare_and_apply = client.register_script(_COMPARE_AND_APPLY)
        #: AoR key → the hash content last written or seen there (bounded).
        self._known: Generations[str, _Content] = Generations(KNOWN_AORS)

    async def lookup(self, tenant: str, aor: str, now: float) -> list[Binding]:
        key = self._keys.aor(tenant, aor)
        if self._pipe is not None:
            flat = await self._pipe.execute("HGETALL", key)
            values: Iterable[bytes | str] = flat[1::2]
        else:
            values = (await self._client.hgetall(key)).values()
        return ordered(b for b in _decode_all(values) if b.is_live(now))

    async def update(
        self, tenant: str, aor: str, decide: Callable[[list[Binding]], D], now: float
    ) -> tuple[D, list[Binding]]:
        """Decide on what the hash is believed to hold, then compare and apply at once.

        The first belief is what this process last saw there (nothing, for an AoR it
        has not met): right, it costs one round trip; wrong, the script's reply is the
        content to decide on again.
        """
        keys = [self._keys.aor(tenant, aor), self._keys.index(tenant), self._keys.nat(tenant)]
        believed = self._known.pop(keys[0])
        if believed is None:
            believed = {}
        seen = False  # the belief is what Redis replied, not a guess
        for _ in range(self._max_attempts):
            live = ordered(b for b in _decode_all(believed.values()) if b.is_live(now))
            decision = decide(list(live))
            after = merged(live, decision.changes, now)
            gone = sorted({_text(field) for field in believed} - {b.contact for b in after})
            scores = {b.contact: repr(b.expires_at) for b in decision.changes.upserts}
            upserts = {b.contact: _encode(b, scores[b.contact]) for b in decision.changes.upserts}
            writes = _Writes()
            if upserts or gone:
                _write_aor(writes, upserts, gone, after, now)
                _write_indexes(writes, aor, decision.changes.upserts, scores, gone, now)
            elif seen:
                self._remember(keys[0], believed)
                return decision, after
            reply = await self._apply(keys, writes.argv(believed))
            if not isinstance(reply, list):
                self._remember(keys[0], _content_after(believed, gone, upserts, after))
                return decision, after
            believed, seen = dict(zip(reply[::2], reply[1::2], strict=True)), True
        raise LocationBusy(f"{aor} of {tenant} kept changing during {self._max_attempts} tries")

    async def _apply(self, keys: list[str], argv: list[str | bytes]) -> Any:
        """Run :data:`_COMPARE_AND_APPLY`: 1, or the hash's content as a flat list."""
        if self._pipe is not None:
            sha = self._compare_and_apply.sha
            return await self._pipe.evalsha(sha, _COMPARE_AND_APPLY, keys, list(argv))
        return await self._compare_and_apply(keys=keys, args=argv)

    def _remember(self, key: str, content: _Content) -> None:
        self._known.put(key, content)

    async def remove_all(self, tenant: str) -> None:
        self._known.clear()
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


def _write_aor(
    writes: _Writes,
    upserts: dict[str, str],
    gone: list[str],
    after: list[Binding],
    now: float,
) -> None:
    """The AoR hash: new and refreshed fields, removed and expired ones, its TTL."""
    if not after:
        writes.add("DEL", _AOR)
        return
    if gone:
        writes.add("HDEL", _AOR, *gone)
    items = [text for item in upserts.items() for text in item]
    if items:
        writes.add("HSET", _AOR, *items)
    writes.add("PEXPIRE", _AOR, str(_ttl_ms(max(b.expires_at for b in after), now)))


def _write_indexes(
    writes: _Writes,
    aor: str,
    upserts: tuple[Binding, ...],
    scores: dict[str, str],
    gone: list[str],
    now: float,
) -> None:
    """The tenant's index and NAT sets: this AoR's entries, and expired ones trimmed.

    ``scores`` are the upserts' ``expires_at`` as Redis is sent them (``repr``).
    """
    members = {contact: _member(aor, contact) for contact in gone}
    members.update((b.contact, _member(aor, b.contact)) for b in upserts)
    needs = [b for b in upserts if b.needs_keepalive]
    not_nat = gone + [b.contact for b in upserts if not b.needs_keepalive]
    trim_to = repr(now)
    for zset, added, removed in ((_INDEX, upserts, gone), (_NAT, needs, not_nat)):
        if removed:
            writes.add("ZREM", zset, *(members[contact] for contact in removed))
        if added:
            scored = [x for b in added for x in (scores[b.contact], members[b.contact])]
            writes.add("ZADD", zset, *scored)
            longest_ms = str(_ttl_ms(max(b.expires_at for b in added), now))
            writes.add("PEXPIRE", zset, longest_ms, "NX")  # a new set has no TTL for GT
            writes.add("PEXPIRE", zset, longest_ms, "GT")
        writes.add("ZREMRANGEBYSCORE", zset, "-inf", trim_to)


def _content_after(
    believed: _Content, gone: list[str], upserts: dict[str, str], after: list[Binding]
) -> _Content:
    """What the hash holds once the script applied the writes (HDEL, HSET or DEL)."""
    if not after:
        return {}
    content = {_octets(field): _octets(value) for field, value in believed.items()}
    for contact in gone:
        content.pop(contact.encode(), None)
    for contact, value in upserts.items():
        content[contact.encode()] = value.encode()
    return content


def _octets(value: bytes | str) -> bytes:
    """A field or value as Redis holds it, whether the client decodes responses or not."""
    return value.encode() if isinstance(value, str) else value


def _ttl_ms(expires_at: float, now: float) -> int:
    """A key TTL reaching ``expires_at``, relative to ``now`` (so any clock works)."""
    return max(1, math.ceil((expires_at - now) * 1000))


def _member(aor: str, contact: str) -> str:
    """``[aor, contact]`` as compact JSON (what ``_JSON.encode`` writes, built directly)."""
    return f"[{_json_string(aor)},{_json_string(contact)}]"


def _unmember(member: object) -> tuple[str, str]:
    """The ``(aor, contact)`` of a sorted-set member written by :func:`_member`."""
    if not isinstance(member, bytes | str):
        raise TypeError(f"unexpected sorted-set member {member!r}")
    aor, contact = json.loads(member)
    return _str(aor), _str(contact)


def _encode(binding: Binding, score: str | None = None) -> str:
    """The binding as compact JSON; ``score`` is ``repr(binding.expires_at)`` if known.

    Written by hand, byte for byte what ``_JSON.encode`` writes for the same dict (the
    tests compare them), at a third of the cost: this runs for every REGISTER.
    """
    try:
        source = binding.source
        text = _json_string
        return (
            f'{{"contact":{text(binding.contact)},'
            f'"expires_at":{_json_number(binding.expires_at, score)},'
            f'"call_id":{text(binding.call_id)},"cseq":{_json_number(binding.cseq)},'
            f'"source":[{text(source.transport)},{text(source.ip)},'
            f"{_json_number(source.port)},{text(source.edge)}],"
            f'"q_milli":{_json_number(binding.q_milli)},'
            f'"instance":{_json_optional(binding.instance)},'
            f'"reg_id":{"null" if binding.reg_id is None else _json_number(binding.reg_id)},'
            f'"user_agent":{_json_optional(binding.user_agent)},'
            f'"behind_nat":{_JSON.encode(binding.behind_nat)}}}'
        )
    except TypeError:  # a field of an unexpected type: let the encoder say how it looks
        return _JSON.encode(_fields(binding))


def _fields(binding: Binding) -> dict[str, object]:
    source = binding.source
    return {
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
    }


def _json_number(value: object, known_repr: str | None = None) -> str:
    """A number as JSON writes it: ``repr`` (given, or made), or what the encoder says
    for what repr would not do (a bool, an infinity)."""
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return known_repr or repr(value)
    return _JSON.encode(value)


def _json_optional(value: str | None) -> str:
    return "null" if value is None else _json_string(value)


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
