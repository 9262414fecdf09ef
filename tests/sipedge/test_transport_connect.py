"""Requests we originate over TCP (a trunk's REGISTER): the edge opens the connection,
sends on it, hears the answer on it, and reuses it; an unreachable peer is an OSError."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sipedge.adapters.transport import Inbound, Transports
from sipedge.config import Listen
from sipedge.sip.message import Response
from sipedge.sip.transaction import Peer

REGISTER = (
    b"REGISTER sip:provider.test SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKt1\r\n"
    b"From: <sip:a@provider.test>;tag=1\r\nTo: <sip:a@provider.test>\r\nCall-ID: c@x\r\n"
    b"CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
)
OK = REGISTER.replace(b"REGISTER sip:provider.test SIP/2.0", b"SIP/2.0 200 OK", 1)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.asyncio
async def test_a_connection_is_opened_used_both_ways_and_reused() -> None:
    connections: list[bytes] = []
    served = asyncio.Event()

    async def provider(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(OK)
        await writer.drain()
        await reader.read()  # until we close
        writer.close()
        await writer.wait_closed()
        served.set()

    server = await asyncio.start_server(provider, "127.0.0.1", 0)
    peer = Peer("TCP", "127.0.0.1", server.sockets[0].getsockname()[1])
    got: list[Inbound] = []
    transports = Transports(got.append)
    await transports.start((Listen("TCP", "127.0.0.1", 0),), reuse_port=False)
    try:
        assert not transports.send(REGISTER, peer)  # no connection yet
        await transports.connect(peer)
        await transports.connect(peer)  # already open: kept
        assert transports.send(REGISTER, peer)
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.01)
        assert connections == [REGISTER]
        assert isinstance(got[0].item, Response)
        assert got[0].item.status == 200
        assert got[0].source == peer
    finally:
        await transports.close()
        await asyncio.wait_for(served.wait(), 5)
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_an_unreachable_peer_or_no_tcp_listener_is_an_oserror() -> None:
    transports = Transports(lambda inbound: None)
    await transports.start((Listen("TCP", "127.0.0.1", 0),), reuse_port=False)
    try:
        with pytest.raises(ConnectionRefusedError):
            await transports.connect(Peer("TCP", "127.0.0.1", closed_port()))
    finally:
        await transports.close()
    udp_only = Transports(lambda inbound: None)
    await udp_only.start((Listen("UDP", "127.0.0.1", 0),), reuse_port=False)
    try:
        with pytest.raises(OSError, match="no TCP listener"):
            await udp_only.connect(Peer("TCP", "127.0.0.1", closed_port()))
        await udp_only.connect(Peer("UDP", "127.0.0.1", 5060))  # nothing to open
    finally:
        await udp_only.close()
