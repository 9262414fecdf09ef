"""The sockets of one edge process: UDP endpoints and TCP connections.

Thin asyncio protocols (STYLE habit 2): they move bytes, frame streams with the
core's :class:`~sipedge.sip.framing.StreamFramer`, answer CRLFCRLF keep-alive pings
(RFC 5626 §3.5.1), and hand every parsed message or parse error on to one callback.
They hold no SIP rules. Listening sockets use SO_REUSEPORT so several worker
processes share one port and the kernel spreads peers across them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sipedge.config import Listen
from sipedge.sip.errors import ParseError
from sipedge.sip.framing import Broken, KeepAlive, Rejected, StreamFramer, parse_datagram
from sipedge.sip.message import Request, Response
from sipedge.sip.transaction import Peer

log = logging.getLogger("sipedge.transport")

#: How long a TCP connection may sit on an incomplete message (RFC 4475 clerr).
STREAM_IDLE_S = 32.0


@dataclass(frozen=True, slots=True)
class Inbound:
    """One thing that arrived: a message, or a parse error to answer or drop."""

    item: Request | Response | ParseError
    source: Peer
    listener: Listen


Deliver = Callable[[Inbound], None]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, listen: Listen, deliver: Deliver) -> None:
        self.listen = listen
        self.deliver = deliver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        source = Peer("UDP", str(addr[0]), int(str(addr[1])))
        if data in (b"\r\n\r\n", b"\r\n") or not data.strip(b"\r\n\x00"):
            return  # NAT keep-alive noise (RFC 5626 §4.4.2 STUN is the relay's job)
        try:
            item: Request | Response | ParseError = parse_datagram(data)
        except ParseError as exc:
            # Without its traceback: that holds this frame, whose ``item`` holds the
            # error, a cycle only the cyclic GC would free (one per bad datagram).
            item = exc.with_traceback(None)
        self.deliver(Inbound(item, source, self.listen))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error on %s: %s", self.listen, exc)


class _Tcp(asyncio.Protocol):
    def __init__(self, owner: Transports, listen: Listen) -> None:
        self.owner = owner
        self.listen = listen
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer("TCP", str(host), int(port))
        self.owner._connections[(self.peer.host, self.peer.port)] = self

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        assert self.peer is not None
        for item in self.framer.feed(data):
            if isinstance(item, KeepAlive):
                self.transport.write(b"\r\n")
            elif isinstance(item, Broken):
                log.info("closing %s: %s", self.peer, item.error.reason)
                self.transport.close()
                return
            else:
                error = item.error if isinstance(item, Rejected) else item
                self.owner._deliver(Inbound(error, self.peer, self.listen))
        self._rearm_idle()

    def _rearm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        if self.framer.buffered and self.transport is not None:
            self.idle = asyncio.get_running_loop().call_later(STREAM_IDLE_S, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        if self.peer is not None:
            self.owner._connections.pop((self.peer.host, self.peer.port), None)


class Transports:
    """All listeners of this process; :meth:`send` puts bytes towards a :class:`Peer`."""

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._udp: dict[Listen, _Udp] = {}
        self._servers: list[asyncio.Server] = []
        self._connections: dict[tuple[str, int], _Tcp] = {}
        self._private: dict[Listen, _Udp] = {}
        #: The port of this worker's own UDP socket (multi-worker only), for our Via.
        self.private_port: int | None = None

    async def start(self, listens: tuple[Listen, ...], reuse_port: bool) -> None:
        loop = asyncio.get_running_loop()
        for listen in listens:
            if listen.transport == "UDP":
                _, protocol = await loop.create_datagram_endpoint(
                    lambda listen=listen: _Udp(listen, self._deliver),  # type: ignore[misc]
                    sock=_udp_socket(listen, reuse_port),
                )
                self._udp[listen] = protocol
            else:
                server = await loop.create_server(
                    lambda listen=listen: _Tcp(self, listen),  # type: ignore[misc]
                    host=listen.host,
                    port=listen.port,
                    reuse_port=reuse_port,
                )
                self._servers.append(server)
        if reuse_port:
            await self._start_private(listens, loop)

    async def _start_private(
        self, listens: tuple[Listen, ...], loop: asyncio.AbstractEventLoop
    ) -> None:
        """A UDP port of this worker alone, for the Via of requests it originates.

        Worker processes share the SIP port and the kernel picks one per peer, so the
        answer to a request sent by worker 1 could reach worker 2, which holds no such
        transaction. Responses follow the Via (RFC 3261 §18.2.2), so they come back to
        the worker that owns the transaction. Requests still leave from the shared port:
        the phone's NAT pinhole is for that one.
        """
        shared = next((listen for listen in listens if listen.transport == "UDP"), None)
        if shared is None:
            return
        sock = _udp_socket(Listen("UDP", shared.host, 0), reuse_port=False)
        private = Listen("UDP", shared.host, int(sock.getsockname()[1]))
        _, protocol = await loop.create_datagram_endpoint(
            lambda: _Udp(shared, self._deliver), sock=sock
        )
        self._private[private] = protocol
        self.private_port = private.port

    def udp_listener(self, family_host: str) -> Listen | None:
        """A UDP listener of the address family of ``family_host`` (to send from)."""
        want_v6 = ":" in family_host
        for listen in self._udp:
            if (":" in listen.host) == want_v6:
                return listen
        return None

    def send(self, data: bytes, peer: Peer, via: Listen | None = None) -> bool:
        """Send ``data``; False when no socket can carry it (a transport error)."""
        if peer.transport == "UDP":
            listen = via if via in self._udp else self.udp_listener(peer.host)
            protocol = self._udp.get(listen) if listen is not None else None
            if protocol is None or protocol.transport is None:
                return False
            try:
                protocol.transport.sendto(data, (peer.host, peer.port))
            except (OSError, ValueError) as exc:  # a host name (no DNS here), a bad address
                log.info("cannot send to %s: %s", peer, exc)
                return False
            return True
        connection = self._connections.get((peer.host, peer.port))
        if connection is None or connection.transport is None:
            return False
        connection.transport.write(data)
        return True

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for connection in list(self._connections.values()):
            if connection.transport is not None:
                connection.transport.close()
        for protocol in [*self._udp.values(), *self._private.values()]:
            if protocol.transport is not None:
                protocol.transport.close()
        for server in self._servers:
            await server.wait_closed()


def _udp_socket(listen: Listen, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((listen.host, listen.port))
    sock.setblocking(False)
    return sock
