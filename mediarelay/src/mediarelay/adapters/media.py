"""The media sockets: one UDP socket per local port the sessions hold, packets in and out.

Per datagram (the hot path, 100,000/s is the aim): the first octet says what it is (RFC
7983 §7, inlined for speed: :mod:`mediarelay.demux` is the table). RTP and RTCP of at
least a fixed header (12 and 8 octets, RFC 3550 §5.1, §6.4; RFC 5761 §4 tells them apart)
go to
:meth:`~mediarelay.session.Sessions.receive`, and a :class:`~mediarelay.session.Forward`
is sent at once from the socket it names; a drop is counted there. STUN gets its Binding
answer (:func:`mediarelay.stun.answer_binding`) from the same port, as ICE needs. The rest
(DTLS, ZRTP, TURN channel data, garbage, truncated headers) is dropped and counted: this
relay does not terminate DTLS. Nothing a peer sends can raise out of here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from functools import partial
from typing import cast

from mediarelay.metrics import AdapterCounters
from mediarelay.session import Forward, Sessions
from mediarelay.stun import answer_binding

log = logging.getLogger("mediarelay.media")


class MediaPort(asyncio.DatagramProtocol):
    """One local port: hands every datagram to the plane with the port's number."""

    __slots__ = ("plane", "port", "transport")

    def __init__(self, plane: MediaPlane, port: int) -> None:
        self.plane = plane
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not an asyncio.DatagramTransport subclass: cast.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.plane.packet(self.port, data, addr)

    def error_received(self, exc: Exception) -> None:
        self.plane.send_errors += 1  # e.g. ICMP port unreachable from a phone that left


class MediaPlane:
    """Every media socket of the relay, opened and closed as sessions come and go.

    It is the session core's :class:`~mediarelay.session.PortClaims`: a pair's sockets are
    bound the moment the core draws it, so a port another process holds is set aside
    there and then, before any SDP names it (a call with an unbound port has no audio).
    """

    def __init__(self, bind: str) -> None:
        self.bind = bind
        self.sessions: Sessions | None = None  # set by the relay once both exist
        self._family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        #: Bound by :meth:`claim`, not yet serving (:meth:`open` turns them into transports).
        self._claimed: dict[int, socket.socket] = {}
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stun_answered = self.stun_dropped = self.malformed = self.send_errors = 0

    @property
    def open_ports(self) -> int:
        return len(self._transports)

    def counters(self) -> AdapterCounters:
        return AdapterCounters(
            self.stun_answered, self.stun_dropped, self.malformed, self.send_errors
        )

    # -- PortClaims (mediarelay.session): sockets bound before an SDP names their ports --
    def claim(self, rtp_port: int) -> bool:
        """Bind the RTP and RTCP sockets of a pair now; False if either port is taken."""
        bound: list[socket.socket] = []
        try:
            for port in (rtp_port, rtp_port + 1):
                sock = socket.socket(self._family, socket.SOCK_DGRAM)
                bound.append(sock)
                sock.setblocking(False)
                sock.bind((self.bind, port))
        except OSError as exc:
            log.warning("media port pair %d set aside: %s", rtp_port, exc)
            for sock in bound:
                sock.close()
            return False
        self._claimed[rtp_port], self._claimed[rtp_port + 1] = bound
        return True

    def release(self, rtp_port: int) -> None:
        self.close((rtp_port, rtp_port + 1))

    # -- serving ----------------------------------------------------------------------------
    async def open(self, ports: tuple[int, ...]) -> None:
        """Start serving the claimed sockets of ``ports``."""
        loop = self._loop = asyncio.get_running_loop()
        for port in ports:
            sock = self._claimed.pop(port, None)
            if sock is None:
                continue  # serving already, or released meanwhile
            transport, _ = await loop.create_datagram_endpoint(
                partial(MediaPort, self, port), sock=sock
            )
            self._transports[port] = transport

    def close(self, ports: tuple[int, ...]) -> None:
        for port in ports:
            transport = self._transports.pop(port, None)
            if transport is not None:
                transport.close()
            sock = self._claimed.pop(port, None)
            if sock is not None:
                sock.close()

    def close_all(self) -> None:
        self.close((*self._transports, *self._claimed))

    def packet(self, port: int, data: bytes, addr: tuple[str | int, ...]) -> None:
        """One datagram that reached local ``port`` from ``addr``."""
        first = data[0] if data else 0
        size = len(data)
        # RTP has a 12-octet header; RTCP (packet types 192-223 in the second octet, RFC
        # 5761 §4) an 8-octet one.
        if 128 <= first <= 191 and (size >= 12 or (size >= 8 and 192 <= data[1] <= 223)):
            assert self._loop is not None
            assert self.sessions is not None
            # The socket's own (host, port) tuple as it is; an IPv6 one is cut to two items.
            source = addr if len(addr) == 2 else (addr[0], addr[1])
            decision = self.sessions.receive(
                port,
                source,  # type: ignore[arg-type]  # (str, int) from a UDP socket
                size,
                self._loop.time(),
            )
            if type(decision) is Forward:
                out = self._transports.get(decision.from_port)
                if out is not None:
                    out.sendto(data, decision.destination)
        elif first < 4 and data:
            self._stun(port, data, addr)
        else:
            self.malformed += 1

    def _stun(self, port: int, data: bytes, addr: tuple[str | int, ...]) -> None:
        answer = answer_binding(data, (str(addr[0]), int(addr[1])))
        transport = self._transports.get(port)
        if answer is None or transport is None:
            self.stun_dropped += 1
            return
        self.stun_answered += 1
        transport.sendto(answer, addr)
