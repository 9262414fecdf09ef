"""The dialog store: the call record's codec, and one suite for both stores.

The codec is pinned by a golden record: every edge process of a cluster reads what any
other wrote, so its text must not drift. The suite runs against the in-memory store and
against a real Redis server (``CLOUDPBX_TEST_REDIS_URL``, a tenant of its own per test,
its keys deleted afterwards), through redis-py and through a RedisPipe; the Redis-only
tests at the end run two clients, as two edge processes would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from contracts.keys import dialog_key, tenant_key_pattern
from sipedge.adapters.redis_dialogs import RedisDialogStore
from sipedge.adapters.redis_pipe import RedisPipe
from sipedge.dialogs import DIALOG_TTL_S, Call, DialogStore, Leg, MemoryDialogStore

from .conftest import REDIS_URL

NOW = 1_700_000_000.0

A_LEG = Leg(
    call_id="a-1@192.0.2.10",
    local_tag="edge-a",
    remote_tag="caller-tag",
    local_uri="sip:2002@pbx.example.com",
    remote_uri="sip:2001@pbx.example.com",
    remote_target="sip:2001@192.0.2.10:5060",
    route_set=("<sip:proxy.example.com;lr>",),
    local_cseq=0,
    remote_cseq=2,
    transport="UDP",
    host="192.0.2.10",
    port=5060,
)
B_LEG = Leg(
    call_id="b-1@edge.example.com",
    local_tag="edge-b",
    remote_tag="callee-tag",
    local_uri="sip:2001@pbx.example.com",
    remote_uri="sip:2002@pbx.example.com",
    remote_target="sip:2002@198.51.100.7:5062",
    route_set=(),
    local_cseq=1,
    remote_cseq=0,
    transport="UDP",
    host="198.51.100.7",
    port=5062,
)

GOLDEN = (
    '{"a":{"call_id":"a-1@192.0.2.10","host":"192.0.2.10","local_cseq":0,'
    '"local_tag":"edge-a","local_uri":"sip:2002@pbx.example.com","port":5060,'
    '"remote_cseq":2,"remote_tag":"caller-tag","remote_target":"sip:2001@192.0.2.10:5060",'
    '"remote_uri":"sip:2001@pbx.example.com","route_set":["<sip:proxy.example.com;lr>"],'
    '"transport":"UDP"},"answered_at":1700000000.0,'
    '"b":{"call_id":"b-1@edge.example.com","host":"198.51.100.7","local_cseq":1,'
    '"local_tag":"edge-b","local_uri":"sip:2001@pbx.example.com","port":5062,'
    '"remote_cseq":0,"remote_tag":"callee-tag","remote_target":"sip:2002@198.51.100.7:5062",'
    '"remote_uri":"sip:2002@pbx.example.com","route_set":[],"transport":"UDP"},'
    '"session_expires_at":1700001800.0,"session_interval_s":1800,"tenant":"acme"}'
)


def a_call(tenant: str = "acme", a_id: str = A_LEG.call_id, b_id: str = B_LEG.call_id) -> Call:
    return Call(
        tenant,
        replace(A_LEG, call_id=a_id),
        replace(B_LEG, call_id=b_id),
        NOW,
        session_interval_s=1800,
        session_expires_at=NOW + 1800,
    )


# -- the codec ----------------------------------------------------------------------------


def test_record_text_is_pinned() -> None:
    assert a_call().to_json() == GOLDEN


@pytest.mark.parametrize("text", [GOLDEN, GOLDEN.encode()])
def test_record_reads_back(text: str | bytes) -> None:
    assert Call.from_json(text) == a_call()


def test_escapes_what_json_must() -> None:
    odd = a_call(a_id='quote"back\\slash\u00e9@host')
    assert Call.from_json(odd.to_json()) == odd


# -- both stores ----------------------------------------------------------------------------


class RedisClients:
    """Redis clients (one per simulated edge process) and the test's own tenant."""

    def __init__(self) -> None:
        self.tenant = f"dialogs-test-{uuid.uuid4().hex}"
        self.clients: list[Redis] = []
        self.pipes: list[RedisPipe] = []

    async def store(self, *, piped: bool = False) -> RedisDialogStore:
        client = Redis.from_url(REDIS_URL)
        self.clients.append(client)
        await client.ping()  # unreachable: the test fails, never skips
        if not piped:
            return RedisDialogStore(client)
        pipe = RedisPipe(REDIS_URL, timeout_s=2.0)
        self.pipes.append(pipe)
        return RedisDialogStore(client, pipe=pipe)

    async def piped_store(self) -> RedisDialogStore:
        return await self.store(piped=True)

    async def close(self) -> None:
        if self.clients:
            client = self.clients[0]
            keys = [key async for key in client.scan_iter(match=tenant_key_pattern(self.tenant))]
            if keys:  # the active-calls set is under the tenant's pattern too
                await client.delete(*keys)
        for client in self.clients:
            await client.aclose()
        for pipe in self.pipes:
            await pipe.close()


@pytest_asyncio.fixture
async def redis_clients() -> AsyncIterator[RedisClients]:
    clients = RedisClients()
    try:
        yield clients
    finally:
        await clients.close()


Opener = Callable[[], Awaitable[DialogStore]]


@pytest_asyncio.fixture(params=["memory", "redis", "redis-pipe"])
async def stores(request: pytest.FixtureRequest, redis_clients: RedisClients) -> tuple[str, Opener]:
    """(tenant, a function opening a store); memory stores opened twice share one dict."""
    if request.param == "redis":
        return redis_clients.tenant, redis_clients.store
    if request.param == "redis-pipe":
        return redis_clients.tenant, redis_clients.piped_store
    memory = MemoryDialogStore()

    async def same() -> DialogStore:
        return memory

    return redis_clients.tenant, same


@pytest.mark.asyncio
async def test_a_call_is_found_by_either_legs_call_id(stores: tuple[str, Opener]) -> None:
    tenant, open_store = stores
    store, call = await open_store(), a_call(tenant)
    await store.put(call, NOW)
    assert await store.get(tenant, A_LEG.call_id) == call
    assert await store.get(tenant, B_LEG.call_id) == call
    assert await store.get(tenant, "unknown") is None
    assert await store.get("other-tenant", A_LEG.call_id) is None
    assert await store.count(tenant) == 1


@pytest.mark.asyncio
async def test_a_tenants_calls_are_listed_once_each(stores: tuple[str, Opener]) -> None:
    """What the edge ends when its tenant is disabled: every call, once, not another's."""
    tenant, open_store = stores
    store = await open_store()
    first, second = a_call(tenant), a_call(tenant, "a-2@192.0.2.10", "b-2@edge.example.com")
    await store.put(first, NOW)
    await store.put(second, NOW)
    await store.put(a_call("other-tenant", "a-3@x", "b-3@x"), NOW)
    listed = await store.calls(tenant)
    assert sorted(call.a.call_id for call in listed) == ["a-1@192.0.2.10", "a-2@192.0.2.10"]
    await store.delete(first)
    assert await store.calls(tenant) == [second]
    await store.delete(second)
    assert await store.calls(tenant) == []
    await store.delete(a_call("other-tenant", "a-3@x", "b-3@x"))


@pytest.mark.asyncio
async def test_put_overwrites(stores: tuple[str, Opener]) -> None:
    tenant, open_store = stores
    store, call = await open_store(), a_call(tenant)
    await store.put(call, NOW)
    later = call.with_leg(B_LEG.next_cseq())
    await store.put(later, NOW + 1)
    assert await store.get(tenant, A_LEG.call_id) == later
    assert await store.count(tenant) == 1


@pytest.mark.asyncio
async def test_delete_wins_once(stores: tuple[str, Opener]) -> None:
    tenant, open_store = stores
    store, call = await open_store(), a_call(tenant)
    await store.put(call, NOW)
    assert await store.delete(call) is True
    assert await store.delete(call) is False
    await assert_call_gone(store, tenant)


async def assert_call_gone(store: DialogStore, tenant: str) -> None:
    """Neither leg of :func:`a_call` is found any more, and the tenant counts no call."""
    assert await store.get(tenant, A_LEG.call_id) is None
    assert await store.get(tenant, B_LEG.call_id) is None
    assert await store.count(tenant) == 0


@pytest.mark.parametrize("leg", [A_LEG.call_id, B_LEG.call_id])
@pytest.mark.asyncio
async def test_take_removes_the_whole_call_once(stores: tuple[str, Opener], leg: str) -> None:
    tenant, open_store = stores
    store, call = await open_store(), a_call(tenant)
    await store.put(call, NOW)
    assert await store.take(tenant, leg) == call
    assert await store.take(tenant, leg) is None
    await assert_call_gone(store, tenant)


@pytest.mark.parametrize("leg", [A_LEG.call_id, B_LEG.call_id])
@pytest.mark.asyncio
async def test_take_by_a_store_that_did_not_put_it(stores: tuple[str, Opener], leg: str) -> None:
    tenant, open_store = stores
    writer, reader = await open_store(), await open_store()
    call = a_call(tenant)
    await writer.put(call, NOW)
    assert await reader.take(tenant, leg) == call
    assert await writer.take(tenant, leg) is None  # its knowledge of the legs is stale
    assert await writer.get(tenant, A_LEG.call_id) is None
    assert await writer.get(tenant, B_LEG.call_id) is None


@pytest.mark.asyncio
async def test_take_of_nothing(stores: tuple[str, Opener]) -> None:
    tenant, open_store = stores
    assert await (await open_store()).take(tenant, "unknown") is None


# -- Redis only: what is left in Redis, and two processes ------------------------------------


@pytest.mark.asyncio
async def test_keys_expire_as_a_safety_net(redis_clients: RedisClients) -> None:
    store, tenant = await redis_clients.store(), redis_clients.tenant
    await store.put(a_call(tenant), NOW)
    client = redis_clients.clients[0]
    for call_id in (A_LEG.call_id, B_LEG.call_id):
        ttl = await client.ttl(dialog_key(tenant, call_id))
        assert DIALOG_TTL_S - 60 < ttl <= DIALOG_TTL_S


@pytest.mark.asyncio
async def test_take_when_the_call_id_came_back_with_another_b_leg(
    redis_clients: RedisClients,
) -> None:
    """A store's memory of which legs go together can be stale: the caller reused its
    Call-ID for a new call that another process set up. The record decides."""
    knows_old, other = await redis_clients.store(), await redis_clients.store()
    tenant = redis_clients.tenant
    old = a_call(tenant)
    await knows_old.put(old, NOW)
    assert await other.take(tenant, A_LEG.call_id) == old
    new = a_call(tenant, b_id="b-2@edge.example.com")
    await other.put(new, NOW + 10)
    assert await knows_old.take(tenant, A_LEG.call_id) == new
    client = redis_clients.clients[0]
    assert not await client.exists(dialog_key(tenant, "b-2@edge.example.com"))
    assert await knows_old.count(tenant) == 0


@pytest.mark.asyncio
async def test_two_processes_taking_at_once_end_the_call_once(
    redis_clients: RedisClients,
) -> None:
    first, second = await redis_clients.piped_store(), await redis_clients.store()
    tenant = redis_clients.tenant
    call = a_call(tenant)
    await first.put(call, NOW)
    results = await asyncio.gather(
        first.take(tenant, A_LEG.call_id), second.take(tenant, B_LEG.call_id)
    )
    assert sorted(result is not None for result in results) == [False, True]


@pytest.mark.asyncio
async def test_a_call_the_store_forgot_is_still_taken(
    redis_clients: RedisClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sipedge.adapters.redis_dialogs.KNOWN_CALLS", 1)
    store, tenant = await redis_clients.store(), redis_clients.tenant
    calls = [a_call(tenant, f"a-{n}@host", f"b-{n}@host") for n in range(3)]
    for call in calls:
        await store.put(call, NOW)
    for call in calls:
        assert await store.take(tenant, call.b.call_id) == call
    assert await store.count(tenant) == 0


def test_an_anchored_call_carries_its_relay_and_others_do_not() -> None:
    """The relay is written only for anchored calls: other records keep the golden text."""
    anchored = replace(a_call(), relay="10.0.0.7:2223")
    assert '"relay":"10.0.0.7:2223"' in anchored.to_json()
    assert Call.from_json(anchored.to_json()) == anchored
    assert '"relay"' not in a_call().to_json()


def test_a_call_of_a_tenant_keyed_by_uid_is_charged_under_it_and_others_under_their_name() -> None:
    """A cluster's tenant is billed under its Tenant's UID: any edge process that ends
    the call must settle it on that account, so the record carries it."""
    keyed = replace(a_call(), account="7c0e5c1e-1b1f-4a55-9b4e-2f3a1c9d8e01")
    assert '"account":"7c0e5c1e-1b1f-4a55-9b4e-2f3a1c9d8e01"' in keyed.to_json()
    assert Call.from_json(keyed.to_json()) == keyed
    assert keyed.billing_id == "7c0e5c1e-1b1f-4a55-9b4e-2f3a1c9d8e01"
    assert a_call().billing_id == a_call().tenant
    assert '"account"' not in a_call().to_json()


def test_a_call_owing_an_ack_carries_the_leg_and_others_do_not() -> None:
    """A late offer (the offer in the callee's 2xx) leaves the B leg's ACK owed until the
    caller's ACK brings the answer: any edge process may get that ACK, so it is stored."""
    owing = replace(a_call(), awaiting_ack=a_call().b.call_id)
    assert f'"awaiting_ack":"{a_call().b.call_id}"' in owing.to_json()
    assert Call.from_json(owing.to_json()) == owing
    assert '"awaiting_ack"' not in a_call().to_json()


def test_a_billed_call_carries_its_record_and_a_retried_attempt_its_own_legs() -> None:
    """Any edge process may end the call and write its CDRs: the INVITE time, and the
    caller's leg when an attempt reusing a Call-ID records under ``A.<CSeq>``."""
    billed = replace(a_call(), billed_at_ms=1_700_000_000_000)
    retried = replace(billed, billed_leg="A.4")
    assert '"billed_leg"' not in billed.to_json()
    assert '"billed_leg":"A.4"' in retried.to_json()
    for call in (billed, retried):
        assert Call.from_json(call.to_json()) == call


def test_a_call_through_trunks_carries_their_channels() -> None:
    """Whichever edge process ends the call frees the channels it holds."""
    through = replace(a_call(), channels=("carrier-a", "carrier-b"))
    assert '"channels":["carrier-a","carrier-b"]' in through.to_json()
    assert Call.from_json(through.to_json()) == through
    assert '"channels"' not in a_call().to_json()


def test_a_leg_through_a_trunk_names_it_and_others_do_not() -> None:
    """Whichever edge process sends the BYE answers the provider's challenge to it."""
    through = a_call().with_leg(replace(B_LEG, trunk="carrier-a"))
    assert '"trunk":"carrier-a"' in through.to_json()
    assert Call.from_json(through.to_json()) == through
    assert '"trunk"' not in a_call().to_json()
