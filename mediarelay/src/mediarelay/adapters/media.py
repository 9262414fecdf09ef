"""The media sockets: one UDP socket per local port the sessions hold, packets in and out.

Per datagram (the hot path, 100,000/s is the aim): the socket is read straight from the
loop's poller (``add_reader``), one datagram per wake-up, into one reused buffer, and
sent on as a slice of it. That is an asyncio datagram transport's work minus what a
relay does not need: reading until EAGAIN (a failing system call for nearly every
packet at 50 packets/s per stream), a new bytes object per packet, and a protocol
callback between the two. Measured with ``bench/relay.py`` on the compiled relay: 8.7
µs per packet through uvloop's transports, 7.7 µs this way.

The first octet says what a datagram is (RFC 7983 §7, inlined for speed:
:mod:`mediarelay.demux` is the table). RTP and RTCP of at least a fixed header (12 and 8
octets, RFC 3550 §5.1, §6.4; RFC 5761 §4 tells them apart) go to
:meth:`~mediarelay.session.Sessions.receive`, and a :class:`~mediarelay.session.Forward`
is sent at once from the socket it names; a drop is counted there. STUN gets its Binding
answer (:func:`mediarelay.stun.answer_binding`) from the same port, as ICE needs. The rest
(DTLS, ZRTP, TURN channel data, garbage, truncated headers) is dropped and counted: this
relay does not terminate DTLS. A send the kernel refuses, or an ICMP error it reports on
a later read, counts as a send error. Nothing a peer sends can raise out of here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from mediarelay.metrics import AdapterCounters
from mediarelay.session import Forward, Sessions
from mediarelay.stun import answer_binding

log = logging.getLogger("mediarelay.media")


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
        #: Bound by :meth:`claim`, not yet serving (:meth:`open` starts reading them).
        self._claimed: dict[int, socket.socket] = {}
        #: Serving: read by the loop's poller (:meth:`_readable`).
        self._serving: dict[int, socket.socket] = {}
        #: Every datagram is read into this one buffer (a UDP payload is at most 65,507
        #: octets) and handled before the next read.
        self._buffer = bytearray(65536)
        self._view = memoryview(self._buffer)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stun_answered = self.stun_dropped = self.malformed = self.send_errors = 0

    @property
    def open_ports(self) -> int:
        return len(self._serving)

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
            loop.add_reader(sock.fileno(), self._readable, sock, port)
            self._serving[port] = sock

    def _stop_reading(self, fd: int) -> None:
        # Typed for asyncio's loop, whose remove_reader returns a bool; uvloop's returns
        # None (and compiled code checks return types), so the result is never looked at.
        loop: Any = self._loop
        loop.remove_reader(fd)

    def close(self, ports: tuple[int, ...]) -> None:
        for port in ports:
            sock = self._serving.pop(port, None)
            if sock is not None:
                self._stop_reading(sock.fileno())
            else:
                sock = self._claimed.pop(port, None)
            if sock is not None:
                sock.close()

    def close_all(self) -> None:
        self.close((*self._serving, *self._claimed))

    def _readable(self, sock: socket.socket, port: int) -> None:
        """One datagram per wake-up: the poller calls again while more wait, and reading
        until EAGAIN would cost a failing system call on almost every packet."""
        buffer = self._buffer
        try:
            size, addr = sock.recvfrom_into(buffer)
        except BlockingIOError:
            return
        except OSError:
            self.send_errors += 1  # an ICMP error for an earlier send (a phone that left)
            return
        self.packet(port, self._view[:size], addr)

    def packet(self, port: int, data: memoryview | bytes, addr: tuple[str | int, ...]) -> None:
        """One datagram that reached local ``port`` from ``addr``."""
        size = len(data)
        first = data[0] if size else 0
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
                out = self._serving.get(decision.from_port)
                if out is not None:
                    try:
                        out.sendto(data, decision.destination)
                    except OSError:
                        self.send_errors += 1
        elif first < 4 and size:
            self._stun(port, bytes(data), addr)
        else:
            self.malformed += 1

    def _stun(self, port: int, data: bytes, addr: tuple[str | int, ...]) -> None:
        answer = answer_binding(data, (str(addr[0]), int(addr[1])))
        sock = self._serving.get(port)
        if answer is None or sock is None:
            self.stun_dropped += 1
            return
        self.stun_answered += 1
        try:
            sock.sendto(answer, addr)
        except OSError:
            self.send_errors += 1
