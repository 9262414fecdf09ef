"""The media sockets: one UDP socket per local port the sessions hold, packets in and out.

Per datagram (the hot path, 100,000/s is the aim): the first octet says what it is (RFC
7983 §7, inlined for speed: :mod:`mediarelay.demux` is the table). RTP and RTCP of at
least a fixed header (12 and 8 octets, RFC 3550 §5.1, §6.4) go to
:meth:`~mediarelay.session.Sessions.receive`, and a :class:`~mediarelay.session.Forward`
is sent at once from the socket it names; a drop is counted there. STUN gets its Binding
answer (:func:`mediarelay.stun.answer_binding`) from the same port, as ICE needs. The rest
(DTLS, ZRTP, TURN channel data, garbage, truncated headers) is dropped and counted: this
relay does not terminate DTLS. Nothing a peer sends can raise out of here.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import cast

from mediarelay.metrics import AdapterCounters
from mediarelay.session import Forward, Sessions
from mediarelay.stun import answer_binding

log = logging.getLogger("mediarelay.media")

#: RTCP's fixed header is 8 octets, RTP's 12; a shorter datagram is neither.
MIN_RTP_RTCP = 8


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
    """Every media socket of the relay, opened and closed as sessions come and go."""

    def __init__(self, sessions: Sessions, bind: str) -> None:
        self.sessions = sessions
        self.bind = bind
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

    async def open(self, ports: tuple[int, ...]) -> list[int]:
        """Bind a socket on each of ``ports``; the ones that could not be bound."""
        loop = self._loop = asyncio.get_running_loop()
        failed = []
        for port in ports:
            if port in self._transports:
                continue
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    partial(MediaPort, self, port),
                    local_addr=(self.bind, port),
                )
            except OSError as exc:
                log.warning("cannot bind media port %s:%d: %s", self.bind, port, exc)
                failed.append(port)
                continue
            self._transports[port] = transport
        return failed

    def close(self, ports: tuple[int, ...]) -> None:
        for port in ports:
            transport = self._transports.pop(port, None)
            if transport is not None:
                transport.close()

    def close_all(self) -> None:
        self.close(tuple(self._transports))

    def packet(self, port: int, data: bytes, addr: tuple[str | int, ...]) -> None:
        """One datagram that reached local ``port`` from ``addr``."""
        first = data[0] if data else 0
        if 128 <= first <= 191 and len(data) >= MIN_RTP_RTCP:
            assert self._loop is not None
            # The socket's own (host, port) tuple as it is; an IPv6 one is cut to two items.
            source = addr if len(addr) == 2 else (addr[0], addr[1])
            decision = self.sessions.receive(
                port,
                source,  # type: ignore[arg-type]  # (str, int) from a UDP socket
                len(data),
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
