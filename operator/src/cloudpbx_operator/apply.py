"""Makes the stores hold what render decided, idempotently: the snapshot in Redis, the
tenant's account in Postgres. Doing it twice, or again after a crash half way, changes
nothing the second time.

Publishing (the protocol the edges read, :mod:`contracts.keys`) is one Lua script, so it
is atomic and safe with several operators at once:

1. read the stored snapshot; when its content (the JSON without ``version``) is the new
   content, stop: same version, no notice;
2. refuse (change nothing) when the stored snapshot is another Tenant's (another UID:
   tenant names are unique across namespaces, and Redis keys go by name) and that one
   is not deleted (disabled), or when this one comes disabled (a duplicate's deletion
   must not disable the Tenant that owns the name); a Tenant created again under a
   deleted one's name takes the name over;
3. refuse (change nothing) when a host of the tenant is in the domain index for another
   tenant;
4. store the new JSON with ``version`` = stored version + 1 (1 when none);
5. point each host of the tenant at it in the domain index, and drop the hosts the stored
   snapshot had and the new one has not;
6. PUBLISH ``snapshot_notice(tenant, version)`` on ``SNAPSHOT_CHANNEL``.

A deleted tenant is published disabled (the edges end its calls, drop its phones and its
trunks), then its hosts are released from the domain index (:meth:`Publisher.release`),
so that another Tenant may take its domain; the disabled snapshot stays under its key.

The version lives inside the JSON. The snapshot's canonical JSON (sorted keys, no spaces)
ends with its last key, ``"version":N}``, so Python sends the text up to the digits and
the script appends the version: the stored text is byte for byte
``TenantSnapshot.to_json()`` of that version, and "same content" is "same text before the
digits".

Provisioning creates the tenant (plan, currency) and its account ``main`` — the account
the edge charges — with the store's upserts; a Tenant's CDRs and ledger are never
removed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from contracts.billing.store import BillingStore, InvalidRequest
from contracts.keys import SNAPSHOT_CHANNEL, domain_index_key, escape, snapshot_key
from contracts.snapshot import TenantSnapshot

#: The account a tenant's calls are paid from (sipedge.calls.credit.ACCOUNT).
MAIN_ACCOUNT = "main"
_VERSION_TAIL = ',"version":1}'

PUBLISH_SCRIPT = """
local stored = redis.call('GET', KEYS[1])
local head, tenant, uid, enabled = ARGV[1], ARGV[2], ARGV[5], ARGV[6] == '1'
local version = 0
local old = nil
if stored then
  local digits = string.match(stored, ',"version":(%d+)}$')
  if digits then
    version = tonumber(digits)
    if #stored == #head + #digits + 1 and string.sub(stored, 1, #head) == head then
      return {0, version}
    end
  end
  local ok, decoded = pcall(cjson.decode, stored)
  if ok and type(decoded) == 'table' then old = decoded end
end
if old and type(old['uid']) == 'string' and old['uid'] ~= '' and uid ~= ''
    and old['uid'] ~= uid and (old['enabled'] ~= false or not enabled) then
  return {-2, old['uid']}
end
for i = 7, #ARGV do
  local owner = redis.call('HGET', KEYS[2], ARGV[i])
  if owner and owner ~= tenant then
    return {-1, ARGV[i], owner}
  end
end
version = version + 1
local text = string.format('%s%d}', head, version)
redis.call('SET', KEYS[1], text)
local keep = {}
for i = 7, #ARGV do
  keep[ARGV[i]] = true
  redis.call('HSET', KEYS[2], ARGV[i], tenant)
end
if old then
  local hosts = {old['domain']}
  if type(old['aliases']) == 'table' then
    for _, alias in ipairs(old['aliases']) do hosts[#hosts + 1] = alias end
  end
  for _, host in ipairs(hosts) do
    if type(host) == 'string' and not keep[host]
        and redis.call('HGET', KEYS[2], host) == tenant then
      redis.call('HDEL', KEYS[2], host)
    end
  end
end
redis.call('PUBLISH', ARGV[4], string.format('%s %d', ARGV[3], version))
return {1, version}
"""


RELEASE_SCRIPT = """
local released = 0
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    released = released + 1
  end
end
return released
"""


@dataclass(frozen=True, slots=True)
class Published:
    """The version the tenant's snapshot has in Redis now; ``changed`` when this publish
    stored it (and sent the notice)."""

    version: int
    changed: bool


@dataclass(frozen=True, slots=True)
class HostTaken:
    """A host of the tenant is another tenant's: nothing was written."""

    host: str
    owner: str


@dataclass(frozen=True, slots=True)
class NameTaken:
    """The tenant's name is served for another Tenant (``owner``: its UID), one in
    another namespace: nothing was written."""

    owner: str


def publish_text(snapshot: TenantSnapshot) -> str:
    """The snapshot's canonical JSON up to its version's digits (see the module doc)."""
    text = replace(snapshot, version=1).to_json()
    if not text.endswith(_VERSION_TAIL):  # "version" is the last key of the object
        raise AssertionError("a snapshot's JSON must end with its version")
    return text[: -len("1}")]


class Publisher:
    """Publishes tenants' snapshots to the edges through Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(PUBLISH_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)

    async def publish(self, snapshot: TenantSnapshot) -> Published | HostTaken | NameTaken:
        keys = [snapshot_key(snapshot.name), domain_index_key()]
        args = [
            publish_text(snapshot),
            snapshot.name,
            escape(snapshot.name),
            SNAPSHOT_CHANNEL,
            snapshot.uid,
            "1" if snapshot.enabled else "0",
        ]
        reply: list[Any] = await self._script(keys=keys, args=[*args, *snapshot.hosts])
        outcome = int(reply[0])
        if outcome == -2:
            return NameTaken(_text(reply[1]))
        if outcome < 0:
            return HostTaken(_text(reply[1]), _text(reply[2]))
        return Published(int(reply[1]), outcome == 1)

    async def release(self, snapshot: TenantSnapshot) -> int:
        """Drop the tenant's hosts from the domain index (those still pointing at it):
        the number released."""
        args = [snapshot.name, *snapshot.hosts]
        return int(await self._release(keys=[domain_index_key()], args=args))

    async def stored_uid(self, tenant: str) -> str | None:
        """The UID of the Tenant whose snapshot Redis holds under ``tenant`` (None when
        none or unreadable), without compiling the whole snapshot."""
        raw = await self.redis.get(snapshot_key(tenant))
        try:
            uid = json.loads(raw).get("uid", "") if raw is not None else None
        except (ValueError, AttributeError):
            return None
        return uid if isinstance(uid, str) else None

    async def stored(self, tenant: str) -> TenantSnapshot | None:
        """The snapshot Redis holds for ``tenant`` (None when none or unreadable)."""
        raw = await self.redis.get(snapshot_key(tenant))
        if raw is None:
            return None
        try:
            return TenantSnapshot.from_json(raw)
        except ValueError:
            return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def provision(store: BillingStore, snapshot: TenantSnapshot) -> str | None:
    """The tenant and its main account in the billing store, keyed by the Tenant's UID
    (:attr:`~contracts.snapshot.TenantSnapshot.billing_id`); the refusal's text when the
    store cannot take the change (a tenant's currency never changes)."""
    billing = snapshot.billing
    try:
        await store.upsert_tenant(snapshot.billing_id, plan=billing.plan, currency=billing.currency)
        await store.create_account(snapshot.billing_id, MAIN_ACCOUNT)
    except InvalidRequest as exc:
        return str(exc)
    return None
