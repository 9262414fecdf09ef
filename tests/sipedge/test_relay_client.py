"""The edge's ng client (sipedge.adapters.relay) against fake relays on loopback.

Each fake relay decodes what it gets with the shared codec (contracts.ng.control) and
answers from a script: it may stay silent for the first datagrams (the client must send
the same datagram again, same cookie), refuse, or never answer. Timeouts are cut to
tens of milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import pytest
import pytest_asyncio

from contracts.ng.control import Command, Offer, Ping, Reply, parse_request, reply_datagram
from contracts.ng.notice import TIMEOUT, Notice, notice_datagram
from sipedge.adapters.relay import MediaRelays, RelayRefused, RelayUnanswered, Retransmission
from sipedge.media import RelayAddress

FAST = Retransmission(timeout_s=0.05, tries=3)
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


class FakeRelay(asyncio.DatagramProtocol):
    """Answers ng commands with ``script(command)``; silent for the first ``drop`` ones."""

    def __init__(self, script: Callable[[Command], Reply | None], drop: int = 0) -> None:
        self.script, self.drop = script, drop
        self.datagrams: list[bytes] = []
        self.last_source: tuple[str | int, ...] = ()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.datagrams.append(data)
        self.last_source = addr
        if len(self.datagrams) <= self.drop:
            return
        request = parse_request(data)
        reply = self.script(request.command)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply_datagram(request.cookie, reply), addr)

    @property
    def address(self) -> RelayAddress:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return RelayAddress(host, port)


def rewriting(command: Command) -> Reply:
    if isinstance(command, Ping):
        return Reply.pong()
    return Reply.ok(sdp=b"rewritten")


Start = Callable[[FakeRelay], Awaitable[FakeRelay]]


@pytest_asyncio.fixture
async def fakes() -> AsyncIterator[Start]:
    transports: list[asyncio.BaseTransport] = []
    loop = asyncio.get_running_loop()

    async def start(relay: FakeRelay) -> FakeRelay:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: relay, local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        return relay

    yield start
    for transport in transports:
        transport.close()


async def client_for(*relays: FakeRelay) -> MediaRelays:
    client = MediaRelays([relay.address for relay in relays], FAST, ping_interval_s=3600)
    await client.client.open()
    return client


@pytest.mark.asyncio
async def test_offer_returns_the_relay_and_its_sdp(fakes: Start) -> None:
    relay = await fakes(FakeRelay(rewriting))
    client = await client_for(relay)
    try:
        chosen, sdp = await client.offer(Offer(call_id="c1", from_tag="a", sdp=SDP))
        assert (chosen, sdp) == (relay.address, b"rewritten")
        command = parse_request(relay.datagrams[0]).command
        assert command == Offer(call_id="c1", from_tag="a", sdp=SDP)
    finally:
        client.client.close()


@pytest.mark.asyncio
async def test_a_lost_command_is_sent_again_with_the_same_cookie(
    fakes: Start,
) -> None:
    relay = await fakes(FakeRelay(rewriting, drop=2))
    client = await client_for(relay)
    try:
        _, sdp = await client.offer(Offer(call_id="c2", from_tag="a", sdp=SDP))
        assert sdp == b"rewritten"
        assert len(relay.datagrams) == 3
        assert len(set(relay.datagrams)) == 1  # the very same datagram: the relay's cache
    finally:
        client.client.close()


@pytest.mark.asyncio
async def test_cookies_differ_per_command(fakes: Start) -> None:
    relay = await fakes(FakeRelay(rewriting))
    client = await client_for(relay)
    try:
        await asyncio.gather(
            *(client.offer(Offer(call_id=f"c{n}", from_tag="a", sdp=SDP)) for n in range(5))
        )
        cookies = {parse_request(d).cookie for d in relay.datagrams}
        assert len(cookies) == 5
    finally:
        client.client.close()


@pytest.mark.asyncio
async def test_an_error_reply_raises_with_the_relays_reason(fakes: Start) -> None:
    relay = await fakes(FakeRelay(lambda command: Reply.error("Ran out of ports")))
    client = await client_for(relay)
    try:
        with pytest.raises(RelayRefused, match="offer refused: Ran out of ports"):
            await client.offer(Offer(call_id="c3", from_tag="a", sdp=SDP))
        assert client.pool.is_up(relay.address)  # it answered: it is up, just full
    finally:
        client.client.close()


@pytest.mark.asyncio
async def test_a_silent_relay_is_marked_down_and_the_next_takes_the_call(
    fakes: Start,
) -> None:
    silent = await fakes(FakeRelay(lambda command: None))
    good = await fakes(FakeRelay(rewriting))
    client = await client_for(silent, good)
    try:
        # A call-id the ring gives to the silent relay first.
        call_id = next(
            f"c{n}" for n in range(100) if client.pool.candidates(f"c{n}")[0] == silent.address
        )
        chosen, _ = await client.offer(Offer(call_id=call_id, from_tag="a", sdp=SDP))
        assert chosen == good.address
        assert len(silent.datagrams) == FAST.tries
        assert not client.pool.is_up(silent.address)
    finally:
        client.client.close()


@pytest.mark.asyncio
async def test_no_relay_answering_raises_unanswered(fakes: Start) -> None:
    silent = await fakes(FakeRelay(lambda command: None))
    client = await client_for(silent)
    try:
        with pytest.raises(RelayUnanswered, match="no media relay answered"):
            await client.offer(Offer(call_id="c4", from_tag="a", sdp=SDP))
        with pytest.raises(RelayUnanswered, match="no media relay is up"):
            await client.offer(Offer(call_id="c5", from_tag="a", sdp=SDP))
    finally:
        client.client.close()


@pytest.mark.asyncio
async def test_pings_mark_relays_down_and_up_again(fakes: Start) -> None:
    relay = await fakes(FakeRelay(rewriting, drop=FAST.tries))
    client = await client_for(relay)
    try:
        await client.ping_all()
        assert not client.pool.is_up(relay.address)
        await client.ping_all()
        assert client.pool.is_up(relay.address)
    finally:
        client.client.close()


@pytest.mark.asyncio
async def test_a_notice_from_a_relay_reaches_the_handler_and_a_stray_reply_does_not(
    fakes: Start,
) -> None:
    relay = await fakes(FakeRelay(rewriting))
    client = await client_for(relay)
    notices: list[Notice] = []
    client.on_notice(notices.append)
    try:
        await client.offer(Offer(call_id="c9", from_tag="a", sdp=SDP))  # learn our address
        assert relay.transport is not None
        ours = relay.last_source
        relay.transport.sendto(reply_datagram(b"nobody_1", Reply.pong()), ours)  # stray
        relay.transport.sendto(notice_datagram(b"n1", Notice(TIMEOUT, "c9")), ours)
        for _ in range(100):
            if notices:
                break
            await asyncio.sleep(0.01)
        assert notices == [Notice(TIMEOUT, "c9")]
    finally:
        await client.stop()


@pytest.mark.asyncio
async def test_a_relay_named_by_host_is_every_address_it_resolves_to(fakes: Start) -> None:
    """A headless Service names every relay pod: each address is a relay on the ring, and
    the call's relay is named by its address, as every edge process names it."""
    relay = await fakes(FakeRelay(rewriting))
    named = RelayAddress("localhost", relay.address.port)
    client = MediaRelays([named, RelayAddress("192.0.2.7", 2223)], FAST, ping_interval_s=3600)
    await client.client.open()
    try:
        await client.expand()
        assert set(client.pool.relays) == {relay.address, RelayAddress("192.0.2.7", 2223)}
        client.pool.mark(RelayAddress("192.0.2.7", 2223), up=False)
        chosen, _ = await client.offer(Offer(call_id="c1", from_tag="a", sdp=SDP))
        assert chosen == relay.address  # 127.0.0.1: what localhost resolves to
        await client.expand()  # the same addresses: the pool and what it knows stay
        assert not client.pool.is_up(RelayAddress("192.0.2.7", 2223))
    finally:
        client.client.close()
