"""The trunk registration driver (sipedge.registrations, issue 6.2) without sockets or
waiting: its REGISTERs are built from the trunk and the machine, a fake edge carries
them to a provider that checks real digests, and time is a fake clock the test moves.

Each REGISTER of one registration keeps its Call-ID and From tag while its CSeq grows
(RFC 3261 §10.2.4); of two edges sharing the leases one registers; a removed trunk is
unregistered and its lease released; a lost lease stops the registering, a stop releases
it without unregistering; an unresolvable registrar or a store that fails changes what
it must and nothing else.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from contracts.snapshot import TenantSnapshot
from contracts.trunk import compile_trunk
from sipedge.edge import ClientHandler
from sipedge.leases import MemoryLeases
from sipedge.metrics import Metrics
from sipedge.registrations import (
    MemoryStatusBoard,
    Resolve,
    Settings,
    Standing,
    TrunkRegistrations,
)
from sipedge.sip.auth import parse_credentials
from sipedge.sip.digest import DigestServer, Verdict, ha1
from sipedge.sip.message import Request, Response, make_response
from sipedge.sip.transaction import ClientKey, Peer, TimedOut, Timer
from sipedge.trunking import (
    Hop,
    Register,
    State,
    Status,
    account,
    next_hop,
    register_request,
    wanted_trunks,
)

TENANT = "acme"
PASSWORD = "s3cret-trunk"
CONTACT = "<sip:trunk-carrier-a.acme@192.0.2.10:5060;transport=udp>"


def trunk_manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cloudpbx.io/v1",
        "kind": "Trunk",
        "metadata": {"name": spec.pop("name", "carrier-a")},
        "spec": {
            "tenant": TENANT,
            "host": "sip.carrier.example",
            "username": "4930555",
            "password": {"secretRef": {"name": "carrier-a", "key": "password"}},
            "register": {"enabled": True, "expires": 600},
            **spec,
        },
    }


TRUNK = compile_trunk(trunk_manifest(), tenant=TENANT)


def snapshot(
    *manifests: dict[str, Any], enabled: bool = True, password: str = PASSWORD
) -> TenantSnapshot:
    return TenantSnapshot(
        name=TENANT,
        domain="acme.pbx.test",
        enabled=enabled,
        trunk_manifests=manifests,
        trunk_passwords={m["metadata"]["name"]: password for m in manifests},
    )


# -- the pure parts ----------------------------------------------------------------------
def test_a_register_carries_the_trunk_the_machine_and_our_contact() -> None:
    register = Register(3, 600, ("Authorization", 'Digest username="4930555"'))
    request = register_request(
        TRUNK,
        register,
        via="SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx;rport",
        contact=CONTACT,
        call_id="c1@cloudpbx",
        from_tag="f1",
        user_agent="cloudpbx-edge",
    )
    assert request.to_bytes() == (
        b"REGISTER sip:sip.carrier.example SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:4930555@sip.carrier.example>;tag=f1\r\n"
        b"To: <sip:4930555@sip.carrier.example>\r\n"
        b"Call-ID: c1@cloudpbx\r\n"
        b"CSeq: 3 REGISTER\r\n"
        b"Contact: <sip:trunk-carrier-a.acme@192.0.2.10:5060;transport=udp>\r\n"
        b"Expires: 600\r\n"
        b"User-Agent: cloudpbx-edge\r\n"
        b'Authorization: Digest username="4930555"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )


def test_the_machine_knows_our_contact_as_a_uri_and_the_digest_user() -> None:
    trunk = compile_trunk(trunk_manifest(authUsername="acme-4930555"), tenant=TENANT)
    known = account(TENANT, trunk, PASSWORD, CONTACT)
    assert known.contact == "sip:trunk-carrier-a.acme@192.0.2.10:5060;transport=udp"
    assert (known.username, known.registrar, known.expires_s) == (
        "acme-4930555",
        "sip:sip.carrier.example",
        600,
    )


@pytest.mark.parametrize(
    ("spec", "hop"),
    [
        ({}, Hop("sip.carrier.example", 5060, "UDP", srv=True)),  # no port: SRV first
        ({"port": 5060}, Hop("sip.carrier.example", 5060, "UDP")),
        ({"port": 5080, "transport": "tcp"}, Hop("sip.carrier.example", 5080, "TCP")),
        ({"host": "192.0.2.5"}, Hop("192.0.2.5", 5060, "UDP")),  # an address: no lookup
        ({"outboundProxy": "sip:proxy.example:5070"}, Hop("proxy.example", 5070, "UDP")),
        ({"outboundProxy": "sip:proxy.example"}, Hop("proxy.example", 5060, "UDP", srv=True)),
        ({"outboundProxy": "sip:192.0.2.7"}, Hop("192.0.2.7", 5060, "UDP")),
        ({"outboundProxy": "sip:192.0.2.7:5070;transport=tcp"}, Hop("192.0.2.7", 5070, "TCP")),
    ],
)  # fmt: skip
def test_next_hop(spec: dict[str, Any], hop: Hop) -> None:
    assert next_hop(compile_trunk(trunk_manifest(**spec), tenant=TENANT)) == hop


def test_only_registering_trunks_of_enabled_tenants_are_wanted() -> None:
    quiet = trunk_manifest(name="quiet", register={"enabled": False})
    assert set(wanted_trunks([snapshot(trunk_manifest(), quiet)])) == {(TENANT, "carrier-a")}
    assert wanted_trunks([snapshot(trunk_manifest(), enabled=False)]) == {}


# -- the driver --------------------------------------------------------------------------
class FakeTime:
    """A clock the test moves; ``sleep`` waits until it has moved far enough."""

    def __init__(self) -> None:
        self.now = 1_780_000_000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        done = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, next(self._order), done))
        await done

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while True:
            await settle()
            self._sleepers = [s for s in self._sleepers if not s[2].done()]
            due = sorted(s for s in self._sleepers if s[0] <= target)
            if not due:
                break
            self.now = max(self.now, due[0][0])
            self._sleepers.remove(due[0])
            due[0][2].set_result(None)
        self.now = target
        await settle()


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


@dataclass
class Provider:
    """The provider's registrar: challenges, checks the digest, grants ``grant_s``;
    ``silent``: answers nothing (the transaction times out)."""

    password: str = PASSWORD
    grant_s: int = 600
    silent: bool = False
    server: DigestServer = field(
        default_factory=lambda: DigestServer("carrier.example", b"k" * 32, ("MD5",))
    )
    bindings: dict[str, int] = field(default_factory=dict)

    def answer(self, request: Request) -> Response:
        value = request.headers.get("Authorization")
        if value is None:
            return self._challenge(request)
        verdict = self.server.verify(
            parse_credentials(value, "Authorization"),
            method="REGISTER",
            stored_ha1=ha1("4930555", "carrier.example", self.password, "MD5"),
            client_addr="192.0.2.10",
            now=0.0,
            request_uri=request.uri_text,
        ).verdict
        if verdict is not Verdict.OK:
            return make_response(request, 403, "Forbidden", to_tag="p1")
        contact = request.headers.get("Contact") or ""
        expires = int(request.headers.get("Expires") or 0)
        if expires == 0:
            self.bindings.pop(contact, None)
            return make_response(request, 200, "OK", to_tag="p1")
        self.bindings[contact] = self.grant_s
        response = make_response(request, 200, "OK", to_tag="p1")
        response.headers.add("Contact", f"{contact};expires={self.grant_s}")
        return response

    def _challenge(self, request: Request) -> Response:
        response = make_response(request, 401, "Unauthorized", to_tag="p1")
        for challenge in self.server.challenges(client_addr="192.0.2.10", now=0.0):
            response.headers.add("WWW-Authenticate", challenge.to_header_value())
        return response


class FakeEdge:
    """Carries each request to the provider and hands its answer back at once; a server
    in ``down`` answers nothing (``"silent"``) or 503 (``"503"``) instead."""

    def __init__(self, provider: Provider, time: FakeTime) -> None:
        self.provider, self.time = provider, time
        self.sent: list[tuple[Request, Peer]] = []
        self.down: dict[Peer, str] = {}
        self._branches = itertools.count()

    def request(self, request: Request, destination: Peer, handler: ClientHandler) -> ClientKey:
        self.sent.append((request, destination))
        key = ClientKey(request.top_via.branch or "", "REGISTER")
        failure = self.down.get(destination)
        if self.provider.silent or failure == "silent":
            handler(TimedOut(key, Timer.F))
        elif failure == "503":
            handler(make_response(request, 503, "Service Unavailable", to_tag="p1"))
        else:
            handler(Response(100, "Trying"))  # ignored
            handler(self.provider.answer(request))
        return key

    def via_for(self, transport: str = "UDP") -> str:
        return f"SIP/2.0/{transport} 192.0.2.10:5060;branch=z9hG4bK{next(self._branches)};rport"

    def contact(self, user: str, transport: str = "UDP") -> str:
        return f"<sip:{user}@192.0.2.10:5060;transport={transport.lower()}>"

    async def connect(self, destination: Peer) -> None:
        return None

    def wall(self) -> float:
        return self.time()


async def resolve(hop: Hop) -> list[tuple[str, int]]:
    if hop.host.endswith(".invalid"):
        raise OSError(-2, "Name or service not known")
    return [("198.51.100.20", hop.port)]


@dataclass
class World:
    time: FakeTime
    provider: Provider
    leases: MemoryLeases
    board: MemoryStatusBoard = field(default_factory=MemoryStatusBoard)
    edges: list[tuple[FakeEdge, TrunkRegistrations, Metrics]] = field(default_factory=list)

    def edge(
        self, holder: str, leases: Any = None, resolve: Resolve = resolve
    ) -> tuple[FakeEdge, TrunkRegistrations]:
        fake, metrics = FakeEdge(self.provider, self.time), Metrics()
        driver = TrunkRegistrations(
            fake,
            leases or self.leases,
            self.board,
            metrics,
            holder=holder,
            user_agent="cloudpbx-edge",
            settings=Settings(lease_ttl_s=30.0, backoff_base_s=2.0),
            resolve=resolve,
            sleep=self.time.sleep,
        )
        self.edges.append((fake, driver, metrics))
        return fake, driver


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    time = FakeTime()
    made = World(time, Provider(), MemoryLeases(time))
    yield made
    for _, driver, _ in made.edges:
        await driver.stop()


def registers(fake: FakeEdge) -> list[Request]:
    return [request for request, _ in fake.sent]


def state_metric(metrics: Metrics, state: str) -> float | None:
    labels = {"tenant": TENANT, "trunk": "carrier-a", "state": state}
    return metrics.registry.get_sample_value("sip_trunk_registration_state", labels)


@pytest.mark.asyncio
async def test_a_registration_keeps_call_id_and_tag_while_cseq_grows(world: World) -> None:
    fake, driver = world.edge("edge-1")
    driver.sync([snapshot(trunk_manifest())])
    await world.time.advance(0)
    await world.time.advance(540)  # the refresh: 60 s before the 600 s granted end
    sent = registers(fake)
    assert len(sent) == 4  # challenged, answered; refreshed: challenged, answered
    assert {r.call_id for r in sent} == {sent[0].call_id}
    assert {r.headers.get("From") for r in sent} == {sent[0].headers.get("From")}
    assert [r.cseq.number for r in sent] == [1, 2, 3, 4]
    assert [r.headers.get("Authorization") is not None for r in sent] == [False, True] * 2
    assert {r.headers.get("Contact") for r in sent} == {CONTACT}
    assert {peer for _, peer in fake.sent} == {Peer("UDP", "198.51.100.20", 5060)}
    assert world.provider.bindings == {CONTACT: 600}
    assert driver.statuses()[TENANT, "carrier-a"].status == Status(State.REGISTERED, 200, "OK")
    published = world.board.statuses[TENANT, "carrier-a"]
    assert (published.state, published.status, published.holder) == ("Registered", 200, "edge-1")
    metrics = world.edges[0][2]
    assert (state_metric(metrics, "Registered"), state_metric(metrics, "Failed")) == (1.0, 0.0)


@pytest.mark.asyncio
async def test_refreshes_stay_with_the_server_registered_with_while_it_is_listed(
    world: World,
) -> None:
    """SRV lists two servers of one priority, in a weighted random order that changes from
    one lookup to the next: the refreshes go where the binding is, until the server is
    no longer listed."""
    servers = [("198.51.100.21", 5070), ("198.51.100.22", 5070)]
    lookups: list[list[tuple[str, int]]] = [servers, servers[::-1], servers[::-1]]

    async def rotating(hop: Hop) -> list[tuple[str, int]]:
        return lookups.pop(0) if len(lookups) > 1 else lookups[0]

    fake, driver = world.edge("edge-1", resolve=rotating)
    driver.sync([snapshot(trunk_manifest())])
    await world.time.advance(0)
    await world.time.advance(540)  # refreshed
    assert len(fake.sent) == 4
    assert {peer for _, peer in fake.sent} == {Peer("UDP", "198.51.100.21", 5070)}
    lookups[0] = [("198.51.100.22", 5070)]  # .21 taken out of the records
    await world.time.advance(540)
    assert fake.sent[-1][1] == Peer("UDP", "198.51.100.22", 5070)


SERVERS = [("198.51.100.21", 5070), ("198.51.100.22", 5070)]


async def two_servers(hop: Hop) -> list[tuple[str, int]]:
    return list(SERVERS)


def sent_to(fake: FakeEdge) -> list[tuple[int, str, bool]]:
    """Each REGISTER's CSeq, server and whether it carried credentials."""
    return [
        (request.cseq.number, peer.host, request.headers.get("Authorization") is not None)
        for request, peer in fake.sent
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("failure", ["silent", "503"])
async def test_a_failing_server_gives_way_to_the_providers_next(world: World, failure: str) -> None:
    """RFC 3263 §4.3: the first server of two answers nothing, or 503; the REGISTER goes
    to the next at once, afresh (its own challenge answered), and the refreshes stay
    there. One failed server is not a failed trunk."""
    fake, driver = world.edge("edge-1", resolve=two_servers)
    fake.down[Peer("UDP", *SERVERS[0])] = failure
    driver.sync([snapshot(trunk_manifest())])
    await world.time.advance(0)
    first, second = SERVERS[0][0], SERVERS[1][0]
    assert sent_to(fake) == [(1, first, False), (2, second, False), (3, second, True)]
    standing = driver.statuses()[TENANT, "carrier-a"].status
    assert standing == Status(State.REGISTERED, 200, "OK")
    labels = {"tenant": TENANT, "trunk": "carrier-a", "server": f"{first}:5070"}
    metrics = world.edges[0][2]
    failovers = metrics.registry.get_sample_value(
        "sip_trunk_server_failovers_total", {**labels, "method": "REGISTER"}
    )
    assert failovers == 1.0
    await world.time.advance(540)
    assert sent_to(fake)[3:] == [(4, second, False), (5, second, True)]


@pytest.mark.asyncio
async def test_when_every_server_fails_the_trunk_fails_once_and_backs_off(world: World) -> None:
    fake, driver = world.edge("edge-1", resolve=two_servers)
    fake.down = {Peer("UDP", *SERVERS[0]): "silent", Peer("UDP", *SERVERS[1]): "503"}
    driver.sync([snapshot(trunk_manifest())])
    await world.time.advance(0)
    assert [host for _, host, _ in sent_to(fake)] == [SERVERS[0][0], SERVERS[1][0]]
    status = driver.statuses()[TENANT, "carrier-a"].status
    assert status == Status(State.FAILED, 503, "Service Unavailable", 1)
    await world.time.advance(0.9)  # the back-off is 1 s to 2 s after the first failure
    assert len(fake.sent) == 2


@pytest.mark.asyncio
async def test_of_two_edges_sharing_the_leases_one_registers(world: World) -> None:
    first, one = world.edge("edge-1")
    second, two = world.edge("edge-2")
    one.sync([snapshot(trunk_manifest())])
    two.sync([snapshot(trunk_manifest())])
    await world.time.advance(100)
    assert (len(registers(first)), len(registers(second))) == (2, 0)
    assert two.statuses()[TENANT, "carrier-a"].status is None
    assert two.statuses()[TENANT, "carrier-a"].holder == "edge-1"
    assert state_metric(world.edges[1][2], "Registered") is None  # only on the holder


@pytest.mark.asyncio
async def test_a_stopped_holder_releases_the_lease_and_another_takes_over(world: World) -> None:
    first, one = world.edge("edge-1")
    second, two = world.edge("edge-2")
    one.sync([snapshot(trunk_manifest())])
    two.sync([snapshot(trunk_manifest())])
    await world.time.advance(1)
    await one.stop()
    assert not any(r.headers.get("Expires") == "0" for r in registers(first))  # no unregister
    assert await world.leases.holder(TENANT, "carrier-a") is None
    await world.time.advance(10)  # edge-2's next renewal
    assert await world.leases.holder(TENANT, "carrier-a") == "edge-2"
    assert [r.cseq.number for r in registers(second)] == [1, 2]
    assert registers(second)[0].call_id != registers(first)[0].call_id


@pytest.mark.asyncio
async def test_a_lost_lease_stops_the_registering_without_unregistering(world: World) -> None:
    fake, driver = world.edge("edge-1")
    driver.sync([snapshot(trunk_manifest())])
    await world.time.advance(1)
    # edge-1 missed its renewals (a long pause): its lease lapsed and went to edge-9.
    world.leases._held[TENANT, "carrier-a"] = ("edge-9", world.time.now + 30)
    await world.time.advance(10)
    assert driver.statuses()[TENANT, "carrier-a"] == Standing(None, "edge-9")
    assert state_metric(world.edges[0][2], "Registered") is None
    for _ in range(60):  # edge-9 renews
        assert await world.leases.take(TENANT, "carrier-a", "edge-9", 30.0)
        await world.time.advance(10)
    assert len(registers(fake)) == 2  # no refresh, no unregister


@pytest.mark.asyncio
async def test_a_removed_trunk_is_unregistered_and_its_lease_released(world: World) -> None:
    fake, driver = world.edge("edge-1")
    driver.sync([snapshot(trunk_manifest())])
    await world.time.advance(1)
    driver.sync([snapshot()])
    await world.time.advance(1)
    bye = registers(fake)[2:]
    assert [(r.cseq.number, r.headers.get("Expires")) for r in bye] == [(3, "0"), (4, "0")]
    assert bye[1].headers.get("Authorization") is not None  # its challenge answered
    assert world.provider.bindings == {}
    assert world.board.statuses[TENANT, "carrier-a"].state == "Disabled"
    assert await world.leases.holder(TENANT, "carrier-a") is None
    assert driver.statuses() == {}


@pytest.mark.asyncio
async def test_a_changed_password_registers_afresh_after_the_old_one_is_gone(world: World) -> None:
    fake, driver = world.edge("edge-1")
    driver.sync([snapshot(trunk_manifest())])
    await world.time.advance(1)
    world.provider.password = "n3w-secret"
    driver.sync([snapshot(trunk_manifest(), password="n3w-secret")])
    await world.time.advance(1)
    sent = registers(fake)
    assert [r.headers.get("Expires") for r in sent] == ["600", "600", "0", "0", "600", "600"]
    assert sent[3].headers.get("Authorization") is not None  # the old password, refused
    assert sent[4].call_id != sent[0].call_id  # a new registration
    assert driver.statuses()[TENANT, "carrier-a"].status == Status(State.REGISTERED, 200, "OK")


@pytest.mark.asyncio
async def test_a_refused_password_backs_off(world: World) -> None:
    world.provider.password = "other"
    fake, driver = world.edge("edge-1")
    driver.sync([snapshot(trunk_manifest())])
    await world.time.advance(0)
    assert driver.statuses()[TENANT, "carrier-a"].status == Status(
        State.FAILED, 403, "Forbidden", 1
    )
    await world.time.advance(100)  # waits of 1-2, 2-4, 4-8, 8-16, 16-32, 32-64 s
    assert 10 <= len(registers(fake)) <= 14
    failures = world.edges[0][2].registry.get_sample_value(
        "sip_trunk_register_failures_total", {"tenant": TENANT, "trunk": "carrier-a"}
    )
    assert failures == len(registers(fake)) / 2


@pytest.mark.asyncio
async def test_an_unresolvable_registrar_fails_with_the_reason(world: World) -> None:
    fake, driver = world.edge("edge-1")
    driver.sync([snapshot(trunk_manifest(host="sip.carrier.invalid"))])
    await world.time.advance(0)
    status = driver.statuses()[TENANT, "carrier-a"].status
    assert status == Status(
        State.FAILED, 503, "cannot resolve sip.carrier.invalid: Name or service not known", 1
    )
    assert fake.sent == []


@pytest.mark.asyncio
async def test_a_timeout_is_a_408_failure(world: World) -> None:
    world.provider.silent = True
    _, driver = world.edge("edge-1")
    driver.sync([snapshot(trunk_manifest())])
    await world.time.advance(0)
    status = driver.statuses()[TENANT, "carrier-a"].status
    assert status == Status(State.FAILED, 408, "Request Timeout", 1)


class FlakyLeases:
    """Leases whose store stops answering when told to (a MemoryLeases inside: the edge's
    classes are compiled with mypyc in CI's second phase, and interpreted classes cannot
    inherit from compiled ones)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.inner = MemoryLeases(clock)
        self.down = False

    async def take(self, tenant: str, name: str, holder: str, ttl_s: float) -> bool:
        if self.down:
            raise RedisConnectionError("Connection refused")
        return await self.inner.take(tenant, name, holder, ttl_s)

    async def release(self, tenant: str, name: str, holder: str) -> bool:
        return await self.inner.release(tenant, name, holder)

    async def holder(self, tenant: str, name: str) -> str | None:
        return await self.inner.holder(tenant, name)


@pytest.mark.asyncio
async def test_a_store_error_while_renewing_keeps_the_registration(world: World) -> None:
    leases = FlakyLeases(world.time)
    fake, driver = world.edge("edge-1", leases)
    driver.sync([snapshot(trunk_manifest())])
    await world.time.advance(1)
    leases.down = True
    await world.time.advance(540)  # renewals fail; the refresh still happens
    assert len(registers(fake)) == 4
    assert driver.statuses()[TENANT, "carrier-a"].status == Status(State.REGISTERED, 200, "OK")
    leases.down = False
    await world.time.advance(10)
    assert await leases.holder(TENANT, "carrier-a") == "edge-1"
    assert len(registers(fake)) == 4  # the same registration goes on
