"""A whole relay process on loopback: ng control over UDP, two phones' RTP through it, bleed
and garbage dropped, STUN answered on media ports and on the STUN listener, metrics.

Everything binds 127.0.0.1 and sends only there. The phones and the edge are plain UDP
sockets on ephemeral ports; the relay's media ports come from 21000-21999. Nothing sleeps
to wait for a packet: a test awaits it (or a counter) with a deadline, and the one sleep
is the learning window itself, which must pass before latching locks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import cast

import pytest
import pytest_asyncio
from prometheus_client.core import Metric

from contracts.ng.control import (
    Answer,
    Command,
    Delete,
    Offer,
    Ping,
    Reply,
    Result,
    command_datagram,
    expect_reply,
)
from contracts.sdp import parse_sdp
from mediarelay.app import Relay
from mediarelay.config import RelayConfig
from mediarelay.session import Address, DropReason
from mediarelay.stun import (
    HEADER_BYTES,
    BindingRequest,
    BindingSuccess,
    TransportAddress,
    build_message,
    parse_binding,
)

LOOPBACK = "127.0.0.1"
MEDIA_PORTS = (21000, 21999)
LEARNING_WINDOW_S = 0.05
DEADLINE_S = 2.0
CALL = "7f3c9a1e@127.0.0.1"
CALLER_TAG, CALLEE_TAG = "caller-tag", "callee-tag"


def free_port() -> int:
    """A loopback port free for both UDP and TCP (the STUN listener takes both)."""
    for _ in range(20):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            tcp.bind((LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            try:
                udp.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise AssertionError("no loopback port free for both UDP and TCP")


class Endpoint(asyncio.DatagramProtocol):
    """A UDP socket on an ephemeral loopback port: a phone, the edge, or an attacker."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.errors: asyncio.Queue[Exception] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, remote: Address | None = None) -> Endpoint:
        """Bound to 127.0.0.1:0; with ``remote``, connected (so ICMP errors come back)."""
        loop = asyncio.get_running_loop()
        _, endpoint = await loop.create_datagram_endpoint(
            cls, local_addr=(LOOPBACK, 0), remote_addr=remote
        )
        return endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's UDP transport is not an asyncio.DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received.put_nowait((data, (str(addr[0]), int(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        self.errors.put_nowait(exc)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")
        return (host, port)

    def send(self, data: bytes, to: Address | None = None) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    async def receive(self) -> tuple[bytes, Address]:
        return await asyncio.wait_for(self.received.get(), DEADLINE_S)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` to hold (a counter the relay bumps), at most DEADLINE_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        assert loop.time() < deadline, "the relay never got there"
        await asyncio.sleep(0.002)


def rtp(sequence: int, payload: bytes, ssrc: int = 0x1234ABCD) -> bytes:
    """An RTP packet (RFC 3550 §5.1): version 2, PCMU, 12-byte header, then ``payload``."""
    return struct.pack("!BBHII", 0x80, 0, sequence, 160 * sequence, ssrc) + payload


def sdp_for(phone: Endpoint, owner: str) -> bytes:
    host, port = phone.address
    return (
        f"v=0\r\no={owner} 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


def relay_port(reply: Reply) -> Address:
    """Where a rewritten SDP tells its phone to send RTP: c= and m=."""
    assert reply.result is Result.OK, reply
    assert reply.sdp is not None
    sdp = parse_sdp(reply.sdp)
    assert sdp.connection is not None
    return (sdp.connection.address, sdp.media[0].port)


@dataclass
class Call:
    """An answered call through the relay: the phones, the edge, and where each phone sends."""

    relay: Relay
    edge: Endpoint
    caller: Endpoint
    callee: Endpoint
    caller_sends_to: Address  # from the rewritten answer, which the caller gets
    callee_sends_to: Address  # from the rewritten offer, which the callee gets

    async def ng(self, cookie: bytes, command: Command) -> Reply:
        self.edge.send(command_datagram(cookie, command), self.relay.config.ng)
        data, source = await self.edge.receive()
        assert source == self.relay.config.ng
        return expect_reply(data, cookie)


@pytest_asyncio.fixture
async def relay() -> AsyncIterator[Relay]:
    config = RelayConfig(
        ng=(LOOPBACK, free_port()),
        bind=LOOPBACK,
        advertise=LOOPBACK,
        ports=MEDIA_PORTS,
        stun=(LOOPBACK, free_port()),
        learning_window_s=LEARNING_WINDOW_S,
    )
    relay = Relay(config)
    await relay.start()
    try:
        yield relay
    finally:
        relay.close()


@pytest_asyncio.fixture
async def call(relay: Relay) -> AsyncIterator[Call]:
    endpoints = [await Endpoint.open() for _ in range(3)]
    edge, caller, callee = endpoints
    try:
        partial = Call(relay, edge, caller, callee, ("", 0), ("", 0))
        offered = await partial.ng(
            b"1_1", Offer(call_id=CALL, from_tag=CALLER_TAG, sdp=sdp_for(caller, "caller"))
        )
        answered = await partial.ng(
            b"1_2",
            Answer(
                call_id=CALL,
                from_tag=CALLER_TAG,
                to_tag=CALLEE_TAG,
                sdp=sdp_for(callee, "callee"),
            ),
        )
        yield Call(relay, edge, caller, callee, relay_port(answered), relay_port(offered))
    finally:
        for endpoint in endpoints:
            endpoint.close()


def in_media_range(address: Address) -> bool:
    return address[0] == LOOPBACK and MEDIA_PORTS[0] <= address[1] <= MEDIA_PORTS[1]


# --- ng and RTP --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_rewritten_sdp_points_each_phone_at_its_own_relay_port(call: Call) -> None:
    assert in_media_range(call.caller_sends_to)
    assert in_media_range(call.callee_sends_to)
    assert call.caller_sends_to != call.callee_sends_to
    assert call.relay.plane.open_ports == 4  # RTP and RTCP of both legs


@pytest.mark.asyncio
async def test_rtp_crosses_the_relay_both_ways_intact(call: Call) -> None:
    hello = rtp(1, b"\xff" * 160)
    call.caller.send(hello, call.caller_sends_to)
    assert await call.callee.receive() == (hello, call.callee_sends_to)

    reply = rtp(1, b"\x7f" * 160, ssrc=0x0BADCAFE)
    call.callee.send(reply, call.callee_sends_to)
    assert await call.caller.receive() == (reply, call.caller_sends_to)

    for sequence in range(2, 6):  # and on, in order
        call.caller.send(rtp(sequence, bytes([sequence]) * 160), call.caller_sends_to)
    for sequence in range(2, 6):
        assert await call.callee.receive() == (
            rtp(sequence, bytes([sequence]) * 160),
            call.callee_sends_to,
        )


@pytest.mark.asyncio
async def test_injection_after_the_learning_window_is_dropped_and_counted(call: Call) -> None:
    call.caller.send(rtp(1, b"first"), call.caller_sends_to)
    await call.callee.receive()  # the caller's port has latched the caller by now
    await asyncio.sleep(LEARNING_WINDOW_S + 0.01)  # the window, measured on the loop clock

    attacker = await Endpoint.open()
    try:
        attacker.send(rtp(99, b"spam, spam, spam"), call.caller_sends_to)

        def injected() -> int:
            return call.relay.sessions.counters().media.dropped(DropReason.NOT_LATCHED_PEER)

        await until(lambda: injected() == 1)
    finally:
        attacker.close()
    # Had the relay forwarded the injected packet, it would reach the callee first.
    call.caller.send(rtp(2, b"second"), call.caller_sends_to)
    assert await call.callee.receive() == (rtp(2, b"second"), call.callee_sends_to)
    assert call.callee.received.empty()


@pytest.mark.asyncio
async def test_garbage_on_a_media_port_is_dropped_and_counted(call: Call) -> None:
    call.caller.send(b"\x50" + bytes(19), call.caller_sends_to)  # no kind RFC 7983 knows
    call.caller.send(b"\x80\x00\x01", call.caller_sends_to)  # RTP's first octet, 3 bytes
    await until(lambda: call.relay.plane.malformed == 2)
    call.caller.send(rtp(1, b"real"), call.caller_sends_to)
    assert await call.callee.receive() == (rtp(1, b"real"), call.callee_sends_to)
    assert call.callee.received.empty()
    assert call.relay.sessions.counters().media.caller_to_callee.packets == 1


@pytest.mark.asyncio
async def test_a_datagram_without_a_cookie_is_ignored_quietly(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    edge = await Endpoint.open()
    try:
        edge.send(b"garbage-without-a-space", relay.config.ng)
        edge.send(command_datagram(b"9_1", Ping()), relay.config.ng)
        data, _ = await edge.receive()  # requests are handled in order: garbage went first
        assert expect_reply(data, b"9_1") == Reply.pong()
        assert edge.received.empty()
    finally:
        edge.close()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# --- STUN --------------------------------------------------------------------------------------

TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


def binding_request(transaction_id: bytes = TID) -> bytes:
    return build_message(BindingRequest(transaction_id).to_message(), fingerprint=True)


def mapped(response: bytes, transaction_id: bytes = TID) -> TransportAddress:
    success = parse_binding(response)
    assert isinstance(success, BindingSuccess), success
    assert success.transaction_id == transaction_id
    return success.mapped


def reflexive(endpoint: Endpoint) -> TransportAddress:
    host, port = endpoint.address
    return TransportAddress(ip_address(host), port)


@pytest.mark.asyncio
async def test_a_media_port_answers_stun_binding_with_the_senders_address(call: Call) -> None:
    call.caller.send(binding_request(), call.caller_sends_to)
    response, source = await call.caller.receive()
    assert source == call.caller_sends_to  # from the very port, as ICE needs
    assert mapped(response) == reflexive(call.caller)
    assert call.relay.plane.stun_answered == 1
    assert call.callee.received.empty()  # STUN is answered, never relayed


@pytest.mark.asyncio
async def test_the_stun_listener_answers_over_udp(relay: Relay) -> None:
    assert relay.config.stun is not None
    client = await Endpoint.open()
    try:
        client.send(binding_request(), relay.config.stun)
        response, source = await client.receive()
        assert source == relay.config.stun
        assert mapped(response) == reflexive(client)
    finally:
        client.close()
    assert relay.stun_counters.answered == 1


async def read_stun(reader: asyncio.StreamReader) -> bytes:
    """One STUN message from a stream: the header's length says where it ends."""
    header = await asyncio.wait_for(reader.readexactly(HEADER_BYTES), DEADLINE_S)
    (length,) = struct.unpack("!2xH", header[:4])
    return header + await asyncio.wait_for(reader.readexactly(length), DEADLINE_S)


@pytest.mark.asyncio
async def test_the_stun_listener_answers_two_requests_back_to_back_over_tcp(
    relay: Relay,
) -> None:
    assert relay.config.stun is not None
    reader, writer = await asyncio.open_connection(*relay.config.stun)
    try:
        host, port = writer.get_extra_info("sockname")
        me = TransportAddress(ip_address(host), port)
        second_tid = bytes(range(12))
        writer.write(binding_request() + binding_request(second_tid))  # one segment, two
        await writer.drain()
        assert mapped(await read_stun(reader)) == me
        assert mapped(await read_stun(reader), second_tid) == me
    finally:
        writer.close()
        await writer.wait_closed()
    assert relay.stun_counters.answered == 2


# --- delete and metrics ------------------------------------------------------------------------


async def refused(probe: Endpoint) -> Exception:
    """The ICMP port-unreachable a connected socket reports for a closed port."""
    return await asyncio.wait_for(probe.errors.get(), DEADLINE_S)


@pytest.mark.asyncio
async def test_delete_closes_the_media_ports(call: Call) -> None:
    call.caller.send(rtp(1, b"before"), call.caller_sends_to)
    await call.callee.receive()

    assert await call.ng(b"2_1", Delete(call_id=CALL)) == Reply.ok()
    assert call.relay.plane.open_ports == 0

    for port in (call.caller_sends_to, call.callee_sends_to):
        probe = await Endpoint.open(remote=port)
        try:
            probe.send(binding_request())  # an open media port would answer this
            assert isinstance(await refused(probe), ConnectionRefusedError)
            assert probe.received.empty()
        finally:
            probe.close()
    call.caller.send(rtp(2, b"after"), call.caller_sends_to)
    call.callee.send(rtp(2, b"after"), call.callee_sends_to)
    probe = await Endpoint.open(remote=call.caller_sends_to)  # a last packet, to wait on
    try:
        probe.send(rtp(3, b"after"))
        await refused(probe)
    finally:
        probe.close()
    assert call.caller.received.empty()
    assert call.callee.received.empty()


def samples(metrics: list[Metric], name: str) -> dict[tuple[str, ...], float]:
    """The values of metric ``name``, by their label values (``()`` when unlabelled)."""
    found = next(metric for metric in metrics if metric.name == name)
    return {tuple(sample.labels.values()): sample.value for sample in found.samples}


@pytest.mark.asyncio
async def test_tick_publishes_packets_and_bytes_per_direction(call: Call) -> None:
    for sequence in range(3):
        call.caller.send(rtp(sequence, b"a" * 160), call.caller_sends_to)
        await call.callee.receive()
    for sequence in range(2):
        call.callee.send(rtp(sequence, b"b" * 80), call.callee_sends_to)
        await call.caller.receive()
    call.caller.send(b"\x50garbage", call.caller_sends_to)
    await until(lambda: call.relay.plane.malformed == 1)

    call.relay.tick()
    metrics = list(call.relay.metrics.collect())
    assert samples(metrics, "relay_packets") == {
        ("caller_to_callee",): 3,
        ("callee_to_caller",): 2,
    }
    assert samples(metrics, "relay_bytes") == {
        ("caller_to_callee",): 3 * (12 + 160),
        ("callee_to_caller",): 2 * (12 + 80),
    }
    assert samples(metrics, "relay_latching") == {
        ("first",): 2,
        ("relatch",): 0,
        ("fork_reset",): 0,
    }
    assert samples(metrics, "relay_sessions") == {(): 1}
    assert samples(metrics, "relay_port_pairs")[("in_use",)] == 2
    assert samples(metrics, "relay_malformed_packets") == {(): 1}


@pytest.mark.asyncio
async def test_a_port_another_process_holds_is_set_aside_never_offered() -> None:
    """Two pairs in the range, a port of one held by someone else: that pair is set
    aside the moment it is drawn, so the offer (a pair per leg) cannot be served and is
    refused with a reason, allocating nothing, rather than naming an unbound port."""
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((LOOPBACK, 21991))  # the RTCP port of the pair 21990/21991
    config = RelayConfig(
        ng=(LOOPBACK, free_port()), bind=LOOPBACK, advertise=LOOPBACK, ports=(21990, 21993)
    )
    relay = Relay(config)
    await relay.start()
    edge, phone = await Endpoint.open(), await Endpoint.open()
    try:
        call = Call(relay, edge, phone, phone, ("", 0), ("", 0))
        offer = Offer(call_id=CALL, from_tag=CALLER_TAG, sdp=sdp_for(phone, "caller"))
        refused = await call.ng(b"c1", offer)
        assert refused.result is Result.ERROR
        assert "in use" in (refused.error_reason or "")
        assert relay.sessions.get(CALL) is None
        counters = relay.sessions.counters()
        assert (counters.port_pairs_unusable, counters.port_pairs_in_use) == (1, 0)
        assert relay.plane.open_ports == 0  # the good pair's sockets were closed again
    finally:
        edge.close()
        phone.close()
        relay.close()
        squatter.close()
