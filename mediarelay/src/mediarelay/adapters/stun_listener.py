"""The STUN listener (port 3478 by default, RFC 8489 §18.6): UDP and TCP, Binding only.

Each request is answered by :func:`mediarelay.stun.answer_binding`, which never raises and
returns None for what must be dropped. Over TCP, STUN messages follow each other with no
other framing (RFC 8489 §6.2.2): the 20-byte header's length field says where each ends.
A connection that sends something other than STUN, or more than :data:`MAX_MESSAGE`
bytes in one message, is closed; one connection's garbage never affects another's.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import cast

from mediarelay.stun import answer_binding

log = logging.getLogger("mediarelay.stun")

HEADER_BYTES = 20
#: No Binding request we answer comes near this; it bounds what one connection can buffer.
MAX_MESSAGE = 4096
_LENGTH = struct.Struct("!2xH")


class StunCounters:
    """What the listener saw: answered, dropped (no answer owed) and TCP connections closed."""

    def __init__(self) -> None:
        self.answered = 0
        self.dropped = 0
        self.closed_bad = 0

    def count(self, answer: bytes | None) -> None:
        if answer is None:
            self.dropped += 1
        else:
            self.answered += 1


class StunDatagram(asyncio.DatagramProtocol):
    """STUN over UDP: one answer per request datagram, to its source."""

    def __init__(self, counters: StunCounters) -> None:
        self.counters = counters
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not an asyncio.DatagramTransport subclass: cast.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        answer = answer_binding(data, (str(addr[0]), int(addr[1])))
        self.counters.count(answer)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


async def serve_stun_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counters: StunCounters
) -> None:
    """STUN over TCP: messages back to back, each answered in order."""
    peer = writer.get_extra_info("peername")
    source = (str(peer[0]), int(peer[1]))
    try:
        while True:  # until the peer closes: readexactly raises at the end of the stream
            header = await reader.readexactly(HEADER_BYTES)
            (length,) = _LENGTH.unpack(header[:4])
            if header[0] & 0xC0 or HEADER_BYTES + length > MAX_MESSAGE:
                counters.closed_bad += 1
                return  # not STUN (RFC 8489 §6: the top two bits are zero), or too big
            message = header + await reader.readexactly(length)
            answer = answer_binding(message, source)
            counters.count(answer)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return  # the peer closed, mid-message or not
    finally:
        writer.close()


async def start_stun(
    host: str, port: int, counters: StunCounters
) -> tuple[asyncio.DatagramTransport, asyncio.Server]:
    """Listen for STUN on ``host``:``port`` over UDP and TCP."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: StunDatagram(counters), local_addr=(host, port)
    )
    server = await asyncio.start_server(lambda r, w: serve_stun_stream(r, w, counters), host, port)
    return transport, server
