"""RTP load for relay benchmarks: many two-way streams, 20 ms packets, loss and misrouting counted.

A :class:`Stream` is one call's media through a relay: a caller socket and a callee socket
on loopback, each sending an RTP packet (12-byte header, PT 0, 160-byte payload: 20 ms of
PCMU) every ``interval_s`` to the relay port that faces it, and each counting what the
relay forwards to it. Every packet carries its sender's SSRC (RFC 3550 §5.1), so a packet
that arrives at the wrong socket (a relay that crossed two calls) is counted as misrouted,
not as received.

:func:`run_load` paces all streams together: at each tick it sends one packet per stream
per direction, then drains whatever arrived (``epoll``, non-blocking reads) until the next
tick. It returns :class:`LoadResult` with packets sent, received and misrouted. Loss is
``1 - received / sent`` over the measured period; the last tick's packets get a short grace
time to arrive.

Traffic goes to loopback only: :func:`Stream.open` refuses other relay addresses.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time
from dataclasses import dataclass, field

PAYLOAD_BYTES = 160
_HEADER = struct.Struct("!BBHII")
_SSRC = struct.Struct("!I")


@dataclass(slots=True)
class Leg:
    """One end of a stream: its socket, its SSRC, the relay port it sends to, its counters."""

    sock: socket.socket
    ssrc: int
    peer_ssrc: int
    relay: tuple[str, int] | None = None
    seq: int = 0
    sent: int = 0
    received: int = 0
    misrouted: int = 0

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def packet(self) -> bytes:
        """The next RTP packet: V=2, PT 0 (PCMU), sequence and timestamp advancing."""
        self.seq = (self.seq + 1) & 0xFFFF
        header = _HEADER.pack(0x80, 0, self.seq, (self.seq * 160) & 0xFFFFFFFF, self.ssrc)
        return header + bytes(PAYLOAD_BYTES)


@dataclass(slots=True)
class Stream:
    """A caller and a callee socket; ``caller.relay``/``callee.relay`` are set once the relay
    has answered the offer and the answer (the port each must send to)."""

    caller: Leg
    callee: Leg

    @classmethod
    def open(cls, number: int, host: str = "127.0.0.1") -> Stream:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{host} is not a loopback address: media stays on this machine")
        legs = []
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((host, 0))
            sock.setblocking(False)
            legs.append(sock)
        caller_ssrc, callee_ssrc = 2 * number + 1, 2 * number + 2
        return cls(Leg(legs[0], caller_ssrc, callee_ssrc), Leg(legs[1], callee_ssrc, caller_ssrc))

    def close(self) -> None:
        self.caller.sock.close()
        self.callee.sock.close()


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Packets over the measured period, both directions together."""

    sent: int
    received: int
    misrouted: int
    seconds: float
    per_direction: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def loss(self) -> float:
        """The fraction sent but never received (misrouted ones count as lost)."""
        return 0.0 if not self.sent else max(0.0, 1.0 - self.received / self.sent)

    @property
    def rate(self) -> float:
        """Packets sent per second."""
        return self.sent / self.seconds if self.seconds else 0.0


def run_load(
    streams: list[Stream], seconds: float, interval_s: float = 0.02, grace_s: float = 0.3
) -> LoadResult:
    """Send from every leg every ``interval_s`` for ``seconds``, draining replies meanwhile."""
    legs = [leg for stream in streams for leg in (stream.caller, stream.callee)]
    if any(leg.relay is None for leg in legs):
        raise ValueError("every leg needs the relay port it sends to before the load starts")
    by_fd = {leg.sock.fileno(): leg for leg in legs}
    poller = select.epoll()
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    for leg in legs:
        leg.sent = leg.received = leg.misrouted = 0
    started = time.monotonic()
    next_tick, end = started, started + seconds
    try:
        while next_tick < end:
            for leg in legs:
                leg.sock.sendto(leg.packet(), leg.relay)  # type: ignore[arg-type]
                leg.sent += 1
            next_tick += interval_s
            _drain_until(poller, by_fd, next_tick)
        _drain_until(poller, by_fd, time.monotonic() + grace_s)
    finally:
        poller.close()
    caller_sent = sum(s.caller.sent for s in streams)
    callee_sent = sum(s.callee.sent for s in streams)
    return LoadResult(
        sent=caller_sent + callee_sent,
        received=sum(leg.received for leg in legs),
        misrouted=sum(leg.misrouted for leg in legs),
        seconds=seconds,
        per_direction={
            "caller->callee": (caller_sent, sum(s.callee.received for s in streams)),
            "callee->caller": (callee_sent, sum(s.caller.received for s in streams)),
        },
    )


def _drain_until(poller: select.epoll, by_fd: dict[int, Leg], deadline: float) -> None:
    buffer = bytearray(2048)
    while (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left):
            leg = by_fd[fd]
            while True:
                try:
                    size = leg.sock.recv_into(buffer)
                except BlockingIOError:
                    break
                if size >= 12 and _SSRC.unpack_from(buffer, 8)[0] == leg.peer_ssrc:
                    leg.received += 1
                else:
                    leg.misrouted += 1
