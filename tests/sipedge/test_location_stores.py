"""One suite, both location stores: registrations through the registrar, then read back.

Every test in the first part runs against the in-memory store and against a real Redis
server (the ``store`` fixture of conftest.py); time is injected as ``now``, nothing
sleeps. The Redis-only tests at the end look at what the store leaves in Redis and run
two clients, as two edge processes would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sipedge.location import Binding, LocationStore, Source
from sipedge.registrar import (
    RegistrarDecision,
    RegistrarPolicy,
    address_of_record,
    build_response,
    decide,
)
from sipedge.sip.errors import ParseError
from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Request
from sipedge.sip.uri import SipUri, parse_uri

from .conftest import RedisStores

NOW = 1_700_000_000.0
TENANT = "acme"
AOR = "sip:100@pbx.example.com"
POLICY = RegistrarPolicy(
    domain="pbx.example.com",
    extensions=frozenset({"100", "101"}),
    min_expires_s=60,
    max_expires_s=3600,
    default_expires_s=1800,
    max_contacts=5,
)
SOURCE = Source("UDP", "198.51.100.7", 40000, edge="edge-0/udp")
TORTURE = Path(__file__).resolve().parents[1] / "data" / "sip-torture"


def register(*lines: str, user: str = "100", call_id: str = "call-1", cseq: int = 1) -> Request:
    """A REGISTER for ``user`` with the given extra header lines (Contact, Expires...)."""
    head = [
        "REGISTER sip:pbx.example.com SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{call_id}x{cseq};rport",
        "Max-Forwards: 70",
        f"To: <sip:{user}@pbx.example.com>",
        f"From: <sip:{user}@pbx.example.com>;tag=456248",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *lines,
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_datagram("\r\n".join(head).encode())
    assert isinstance(message, Request)
    return message


async def submit(
    store: LocationStore,
    request: Request,
    now: float = NOW,
    *,
    tenant: str = TENANT,
    policy: RegistrarPolicy = POLICY,
    source: Source = SOURCE,
) -> tuple[RegistrarDecision, list[Binding]]:
    """What the edge does with an authenticated REGISTER: AoR, atomic update."""
    target = address_of_record(request, policy)
    assert isinstance(target, str)
    return await store.update(
        tenant, target, lambda existing: decide(request, existing, now, policy, source), now
    )


def contacts(bindings: list[Binding]) -> list[str]:
    return [binding.contact for binding in bindings]


# -- registering, refreshing, expiring ------------------------------------------------------


@pytest.mark.asyncio
async def test_one_contact_is_registered_and_read_back(store: LocationStore) -> None:
    request = register("Contact: <sip:100@10.0.0.5:5062>", "User-Agent: Yealink T46U")
    decision, after = await submit(store, request)
    assert decision.status == 200
    expected = Binding(
        contact="sip:100@10.0.0.5:5062",
        expires_at=NOW + 1800,
        call_id="call-1",
        cseq=1,
        source=SOURCE,
        user_agent="Yealink T46U",
        behind_nat=True,
    )
    assert after == [expected]
    assert await store.lookup(TENANT, AOR, NOW) == [expected]
    assert await store.count(TENANT, NOW) == 1


@pytest.mark.asyncio
async def test_several_contacts_come_back_highest_q_first(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>;q=0.1, <sip:100@192.0.2.2>"))
    await submit(store, register("Contact: <sip:100@192.0.2.3>;q=0.9", call_id="desk"))
    bindings = await store.lookup(TENANT, AOR, NOW)
    assert contacts(bindings) == ["sip:100@192.0.2.2", "sip:100@192.0.2.3", "sip:100@192.0.2.1"]
    assert [b.q for b in bindings] == ["1", "0.9", "0.1"]
    assert await store.count(TENANT, NOW) == 3


@pytest.mark.asyncio
async def test_a_refresh_extends_the_same_binding(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>", "Expires: 600"))
    refresh = register("Contact: <sip:100@192.0.2.1>", "Expires: 600", cseq=2)
    decision, _ = await submit(store, refresh, NOW + 300)
    assert decision.status == 200
    (binding,) = await store.lookup(TENANT, AOR, NOW + 300)
    assert (binding.expires_at, binding.cseq) == (NOW + 900, 2)
    assert await store.count(TENANT, NOW + 300) == 1


@pytest.mark.asyncio
async def test_a_contact_expires_param_beats_the_expires_header(store: LocationStore) -> None:
    request = register(
        "Contact: <sip:100@192.0.2.1>;expires=120", "Contact: <sip:100@192.0.2.2>", "Expires: 600"
    )
    await submit(store, request)
    bindings = await store.lookup(TENANT, AOR, NOW)
    assert {b.contact: b.expires_at for b in bindings} == {
        "sip:100@192.0.2.1": NOW + 120,
        "sip:100@192.0.2.2": NOW + 600,
    }


@pytest.mark.asyncio
async def test_expired_bindings_are_never_returned(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>", "Expires: 60"))
    await submit(store, register("Contact: <sip:100@10.0.0.2>", "Expires: 600", call_id="c2"))
    assert contacts(await store.lookup(TENANT, AOR, NOW + 59.5)) == [
        "sip:100@10.0.0.2",
        "sip:100@192.0.2.1",
    ]
    assert contacts(await store.lookup(TENANT, AOR, NOW + 60)) == ["sip:100@10.0.0.2"]
    assert await store.count(TENANT, NOW + 60) == 1
    assert await store.lookup(TENANT, AOR, NOW + 600) == []
    assert await store.count(TENANT, NOW + 600) == 0
    assert await store.nat_bindings(TENANT, NOW + 600, 10) == []
    decision, after = await submit(store, register(call_id="c3"), NOW + 600)
    assert (decision.status, after) == (200, [])


@pytest.mark.asyncio
async def test_a_lapsed_contact_registers_afresh(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>", "Expires: 60", cseq=9))
    decision, after = await submit(store, register("Contact: <sip:100@192.0.2.1>"), NOW + 61)
    assert decision.status == 200  # the expired binding's CSeq no longer counts
    assert [(b.cseq, b.expires_at) for b in after] == [(1, NOW + 61 + 1800)]


@pytest.mark.asyncio
async def test_expires_zero_removes_one_contact(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>, <sip:100@192.0.2.2>"))
    await submit(store, register("Contact: <sip:100@192.0.2.1>;expires=0", cseq=2))
    assert contacts(await store.lookup(TENANT, AOR, NOW)) == ["sip:100@192.0.2.2"]


# -- the wildcard, interval limits, the CSeq rule ----------------------------------------


@pytest.mark.asyncio
async def test_star_with_expires_zero_removes_every_binding(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>, <sip:100@192.0.2.2>"))
    await submit(store, register("Contact: <sip:100@192.0.2.3>", call_id="other"))
    decision, after = await submit(store, register("Contact: *", "Expires: 0", cseq=2))
    assert (decision.status, after) == (200, [])
    assert await store.lookup(TENANT, AOR, NOW) == []
    assert await store.count(TENANT, NOW) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("lines", "status"),
    [
        (["Contact: *", "Expires: 3600"], 400),
        (["Contact: *"], 400),
        (["Contact: <sip:100@192.0.2.9>", "Expires: 30"], 423),
        (["Contact: <sip:100@192.0.2.9>;expires=0, <sip:100@192.0.2.1>;expires=1"], 423),
    ],
)
async def test_a_refused_register_changes_nothing(
    store: LocationStore, lines: list[str], status: int
) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>"))
    before = await store.lookup(TENANT, AOR, NOW)
    decision, after = await submit(store, register(*lines, cseq=2))
    assert decision.status == status
    assert after == before == await store.lookup(TENANT, AOR, NOW)


@pytest.mark.asyncio
async def test_423_names_the_minimum(store: LocationStore) -> None:
    request = register("Contact: <sip:100@192.0.2.1>", "Expires: 30")
    decision, after = await submit(store, request)
    response = build_response(request, decision, after, NOW)
    assert (response.status, response.headers.lines("Min-Expires")) == (423, ["60"])


@pytest.mark.asyncio
async def test_too_long_an_interval_is_clamped_to_the_maximum(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>;expires=86400"))
    (binding,) = await store.lookup(TENANT, AOR, NOW)
    assert binding.expires_at == NOW + 3600


@pytest.mark.asyncio
async def test_the_call_id_and_cseq_rule(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>", cseq=5))
    for replayed in (5, 4):
        decision, _ = await submit(store, register("Contact: <sip:100@192.0.2.1>", cseq=replayed))
        assert (decision.status, decision.reason) == (
            500,
            "Server Internal Error: out of order CSeq",
        )
    assert [b.cseq for b in await store.lookup(TENANT, AOR, NOW)] == [5]
    rebooted = register("Contact: <sip:100@192.0.2.1>", call_id="after-reboot", cseq=1)
    decision, after = await submit(store, rebooted, NOW + 10)
    assert decision.status == 200
    assert [(b.call_id, b.cseq) for b in after] == [("after-reboot", 1)]
    assert await store.lookup(TENANT, AOR, NOW + 10) == after


@pytest.mark.asyncio
async def test_a_register_without_contact_fetches(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>;q=0.5, <sip:100@192.0.2.2>"))
    before = await store.lookup(TENANT, AOR, NOW + 100)
    fetch = register(call_id="fetcher")
    decision, after = await submit(store, fetch, NOW + 100)
    assert (decision.status, after) == (200, before)
    assert await store.lookup(TENANT, AOR, NOW + 100) == before
    response = build_response(fetch, decision, after, NOW + 100)
    assert response.headers.lines("Contact") == [
        "<sip:100@192.0.2.2>;expires=1700",
        "<sip:100@192.0.2.1>;expires=1700;q=0.5",
    ]


@pytest.mark.asyncio
async def test_more_contacts_than_allowed_are_refused(store: LocationStore) -> None:
    five = ", ".join(f"<sip:100@192.0.2.{n}>" for n in range(1, 6))
    assert (await submit(store, register(f"Contact: {five}")))[0].status == 200
    decision, after = await submit(store, register("Contact: <sip:100@192.0.2.6>", call_id="x"))
    assert decision.status == 403
    assert len(after) == len(await store.lookup(TENANT, AOR, NOW)) == 5


@pytest.mark.asyncio
async def test_a_parse_error_inside_the_decision_writes_nothing(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>"))
    with pytest.raises(ParseError):
        await submit(store, register("Contact: <sip:100@192.0.2.2>;reg-id=x", cseq=2))
    assert contacts(await store.lookup(TENANT, AOR, NOW)) == ["sip:100@192.0.2.1"]


# -- concurrency: read-decide-write is atomic per AoR ----------------------------------------


def concurrent_registers(count: int) -> list[Request]:
    return [register(f"Contact: <sip:100@192.0.2.{n}>", call_id=f"phone-{n}") for n in range(count)]


@pytest.mark.asyncio
async def test_concurrent_registers_lose_nothing(store: LocationStore) -> None:
    roomy = RegistrarPolicy("pbx.example.com", frozenset({"100"}), max_contacts=100)
    requests = concurrent_registers(24)
    results = await asyncio.gather(*(submit(store, r, policy=roomy) for r in requests))
    assert all(decision.status == 200 for decision, _ in results)
    assert len(await store.lookup(TENANT, AOR, NOW)) == 24
    assert await store.count(TENANT, NOW) == 24


@pytest.mark.asyncio
async def test_concurrent_registers_never_exceed_the_limit(store: LocationStore) -> None:
    """A lost update would let more than five in: each task decided on a stale read."""
    results = await asyncio.gather(*(submit(store, r) for r in concurrent_registers(24)))
    statuses = sorted(decision.status for decision, _ in results)
    assert statuses == [200] * 5 + [403] * 19
    accepted = {b.contact for decision, _ in results for b in decision.changes.upserts}
    assert set(contacts(await store.lookup(TENANT, AOR, NOW))) == accepted
    assert len(accepted) == 5


# -- tenants, removal, NAT keep-alives -------------------------------------------------------


@pytest.mark.asyncio
async def test_tenants_are_isolated(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@192.0.2.1>"), tenant="acme")
    await submit(store, register("Contact: <sip:100@192.0.2.2>"), tenant="globex")
    assert contacts(await store.lookup("acme", AOR, NOW)) == ["sip:100@192.0.2.1"]
    assert contacts(await store.lookup("globex", AOR, NOW)) == ["sip:100@192.0.2.2"]
    # the same Call-ID and CSeq in the other tenant is no replay
    decision, _ = await submit(store, register("Contact: <sip:100@192.0.2.1>"), tenant="globex")
    assert decision.status == 200
    await store.remove_all("acme")
    assert await store.lookup("acme", AOR, NOW) == []
    assert len(await store.lookup("globex", AOR, NOW)) == 2
    assert (await store.count("acme", NOW), await store.count("globex", NOW)) == (0, 2)


@pytest.mark.asyncio
async def test_remove_all_forgets_a_tenant(store: LocationStore) -> None:
    await submit(store, register("Contact: <sip:100@10.0.0.1>"))
    await submit(store, register("Contact: <sip:101@10.0.0.2>", user="101"))
    assert await store.count(TENANT, NOW) == 2
    await store.remove_all(TENANT)
    assert await store.lookup(TENANT, AOR, NOW) == []
    assert await store.lookup(TENANT, "sip:101@pbx.example.com", NOW) == []
    assert await store.count(TENANT, NOW) == 0
    assert await store.nat_bindings(TENANT, NOW, 10) == []
    await store.remove_all("never-existed")
    decision, after = await submit(store, register("Contact: <sip:100@10.0.0.1>", cseq=2))
    assert (decision.status, contacts(after)) == (200, ["sip:100@10.0.0.1"])


@pytest.mark.asyncio
async def test_nat_bindings_are_the_udp_ones_behind_nat(store: LocationStore) -> None:
    tcp = Source("TCP", "198.51.100.9", 51000, "edge-1/tcp")
    await submit(store, register("Contact: <sip:100@10.0.0.1>", "Expires: 900"))  # NAT, UDP
    await submit(store, register("Contact: <sip:100@198.51.100.7:40000>", call_id="b"))  # public
    await submit(store, register("Contact: <sip:100@10.0.0.3>", call_id="c"), source=tcp)
    await submit(store, register("Contact: <sip:101@10.0.0.4>", "Expires: 600", user="101"))
    due = await store.nat_bindings(TENANT, NOW, 10)
    assert [(aor, b.contact) for aor, b in due] == [
        ("sip:101@pbx.example.com", "sip:101@10.0.0.4"),  # soonest to expire first
        (AOR, "sip:100@10.0.0.1"),
    ]
    assert [b.source.edge for _, b in due] == ["edge-0/udp", "edge-0/udp"]
    assert len(await store.nat_bindings(TENANT, NOW, 1)) == 1
    await submit(store, register("Contact: <sip:100@10.0.0.1>;expires=0", cseq=2), NOW + 1)
    assert [aor for aor, _ in await store.nat_bindings(TENANT, NOW + 1, 10)] == [
        "sip:101@pbx.example.com"
    ]
    assert await store.nat_bindings(TENANT, NOW + 600, 10) == []  # expired


# -- RFC 4475 §3.3.12–3.3.14: what the stored contact must keep ------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "stored", "uri_params", "uri_headers"),
    [
        # 'unknownparam' is a contact-param: not part of the stored URI
        ("cparam01", "sip:+19725552222@gw1.example.net", [], ()),
        # inside <> it is a url-parameter and stays one
        ("cparam02", "sip:+19725552222@gw1.example.net;unknownparam", [("unknownparam", None)], ()),
        # the escaped Route header stays in the contact URI, escaped
        (
            "regescrt",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            [],
            (("Route", "<sip:sip.example.com>"),),
        ),
    ],
)
async def test_torture_registers_keep_their_contact_uri(
    store: LocationStore,
    name: str,
    stored: str,
    uri_params: list[tuple[str, str | None]],
    uri_headers: tuple[tuple[str, str], ...],
) -> None:
    request = parse_datagram((TORTURE / f"{name}.sip").read_bytes())
    assert isinstance(request, Request)
    policy = RegistrarPolicy("example.com", frozenset({"watson", "user"}))
    decision, after = await submit(store, request, policy=policy)
    assert decision.status == 200
    response = build_response(request, decision, after, NOW)
    assert response.headers.lines("Contact") == [f"<{stored}>;expires=3600"]
    assert response.headers.lines("Route") == []
    fetched = await store.lookup(TENANT, request.to.sip_uri.aor, NOW + 1)
    assert contacts(fetched) == [stored]
    uri = parse_uri(fetched[0].contact)
    assert isinstance(uri, SipUri)
    assert (list(uri.params), uri.headers) == (uri_params, uri_headers)


# -- Redis only: two processes, and what is left in Redis ----------------------------------


@pytest.mark.asyncio
async def test_two_edge_processes_never_exceed_the_limit(redis_stores: RedisStores) -> None:
    edges = [await redis_stores.open(), await redis_stores.open()]
    requests = concurrent_registers(24)
    results = await asyncio.gather(
        *(submit(edges[n % 2], request) for n, request in enumerate(requests))
    )
    assert sorted(d.status for d, _ in results) == [200] * 5 + [403] * 19
    assert await edges[0].lookup(TENANT, AOR, NOW) == await edges[1].lookup(TENANT, AOR, NOW)
    assert len(await edges[1].lookup(TENANT, AOR, NOW)) == 5


@pytest.mark.asyncio
async def test_two_edge_processes_lose_nothing(redis_stores: RedisStores) -> None:
    edges = [await redis_stores.open(), await redis_stores.open()]
    roomy = RegistrarPolicy("pbx.example.com", frozenset({"100"}), max_contacts=100)
    requests = concurrent_registers(30)
    await asyncio.gather(
        *(submit(edges[n % 2], request, policy=roomy) for n, request in enumerate(requests))
    )
    assert len(await edges[0].lookup(TENANT, AOR, NOW)) == 30
    assert await edges[1].count(TENANT, NOW) == 30


@pytest.mark.asyncio
async def test_redis_keys_carry_ttls_and_are_cleaned_up(redis_stores: RedisStores) -> None:
    store = await redis_stores.open()
    client = redis_stores.clients[0]
    await submit(store, register("Contact: <sip:100@10.0.0.1>", "Expires: 60"))
    await submit(store, register("Contact: <sip:100@10.0.0.2>", "Expires: 600", call_id="b"))
    keys = await redis_stores.keys()
    assert len(keys) == 3  # the AoR hash, the tenant's index, the NAT set
    for key in keys:
        assert 599_000 < await client.pttl(key) <= 600_000
    (aor_key,) = [key for key in keys if b":bindings:" in key]
    later = register("Contact: <sip:100@10.0.0.2>", "Expires: 120", call_id="b", cseq=2)
    await submit(store, later, NOW + 100)  # the first binding has expired by now
    assert await client.hkeys(aor_key) == [b"sip:100@10.0.0.2"]
    assert 119_000 < await client.pttl(aor_key) <= 120_000
    index = [key for key in keys if key.endswith(b":bindings-index")]
    assert await client.zcard(index[0]) == 1
    await submit(store, register("Contact: *", "Expires: 0", call_id="b", cseq=3), NOW + 100)
    assert await redis_stores.keys() == []


@pytest.mark.asyncio
async def test_redis_ignores_and_cleans_an_undecodable_binding(redis_stores: RedisStores) -> None:
    store = await redis_stores.open()
    client = redis_stores.clients[0]
    await submit(store, register("Contact: <sip:100@10.0.0.1>"))
    (aor_key,) = [key for key in await redis_stores.keys() if b":bindings:" in key]
    await client.hset(aor_key, "sip:100@10.0.0.9", '{"contact": 7}')
    assert contacts(await store.lookup(TENANT, AOR, NOW)) == ["sip:100@10.0.0.1"]
    await submit(store, register("Contact: <sip:100@10.0.0.1>", cseq=2))
    assert await client.hkeys(aor_key) == [b"sip:100@10.0.0.1"]
