"""The sockets of one edge process: UDP endpoints and TCP connections.

Thin asyncio protocols (STYLE habit 2): they move bytes, frame streams with the
core's :class:`~sipedge.sip.framing.StreamFramer`, answer CRLFCRLF keep-alive pings
(RFC 5626 §3.5.1), and hand every parsed message or parse error on to one callback.
They hold no SIP rules. Listening sockets use SO_REUSEPORT so several worker
processes share one port and the kernel spreads peers across them; a response that
lands on a worker other than the one whose transaction it answers is handed over to
that worker (:class:`WorkerGroup`), the one place a datagram is looked at before it
is parsed.
"""

from __future__ import annotations

import asyncio
import logging
import re
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


@dataclass(frozen=True, slots=True)
class WorkerGroup:
    """The worker processes sharing one SIP port, and which of them this one is.

    The kernel spreads datagrams over an SO_REUSEPORT group by the sender's address,
    so the answer to a request one worker sent may reach another: the callee answers
    from its own address to our shared port (RFC 3581 rport, or any phone that
    answers where the request came from). Every branch we put in a Via names its
    worker (:meth:`branch_prefix`); a response for another worker is handed to it
    over a datagram socket in Linux's abstract namespace (no file, gone with the
    process), with the sender's address in front. Our Via always shows the shared
    port, the only one a Service or a NAT in front of the edge lets in.
    """

    name: str
    index: int
    count: int

    def address(self, index: int) -> str:
        return f"\0{self.name}-{index}"

    def branch_prefix(self) -> str:
        return f"w{self.index}-"


# The top Via of a response, and the worker its branch names (see WorkerGroup).
_TOP_VIA = re.compile(rb"\r\n(?:[Vv][Ii][Aa]|[Vv])[ \t]*:([^\r\n]*)")
_OWNER = re.compile(rb";[ \t]*branch[ \t]*=[ \t]*z9hG4bKw([0-9]{1,4})-")


def response_owner(data: bytes) -> int | None:
    """The worker named by the top Via branch of a response datagram, if any (cheap:
    runs before parsing, on every datagram a multi-worker edge receives)."""
    if not data.startswith(b"SIP/2.0 "):
        return None
    via = _TOP_VIA.search(data, 0, data.find(b"\r\n\r\n"))
    if via is None:
        return None
    owner = _OWNER.search(via.group(1))
    return None if owner is None else int(owner.group(1))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, listen: Listen, deliver: Deliver, owner: Transports | None = None) -> None:
        self.listen = listen
        self.deliver = deliver
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if data in (b"\r\n\r\n", b"\r\n") or not data.strip(b"\r\n\x00"):
            return  # NAT keep-alive noise (RFC 5626 §4.4.2 STUN is the relay's job)
        host, port = str(addr[0]), int(str(addr[1]))
        if self.owner is not None and self.owner.hand_over(data, host, port):
            return
        self.received(data, Peer("UDP", host, port))

    def received(self, data: bytes, source: Peer) -> None:
        try:
            item: Request | Response | ParseError = parse_datagram(data)
        except ParseError as exc:
            # Without its traceback: that holds this frame, whose ``item`` holds the
            # error, a cycle only the cyclic GC would free (one per bad datagram).
            item = exc.with_traceback(None)
        self.deliver(Inbound(item, source, self.listen))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error on %s: %s", self.listen, exc)


class _HandedOver(asyncio.DatagramProtocol):
    """Datagrams a sibling worker received for us: ``host port\n`` then the datagram."""

    def __init__(self, transports: Transports) -> None:
        self.transports = transports

    def datagram_received(self, data: bytes, addr: object) -> None:
        head, newline, datagram = data.partition(b"\n")
        host, _, port = head.decode("ascii", "replace").rpartition(" ")
        udp = self.transports.udp_protocol(host)
        if not newline or not host or not port.isdigit() or udp is None:
            log.warning("dropping a malformed hand-over datagram")
            return
        udp.received(datagram, Peer("UDP", host, int(port)))


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
        self._tcp_listens: list[Listen] = []
        self._connections: dict[tuple[str, int], _Tcp] = {}
        self._group: WorkerGroup | None = None
        self._inbox: asyncio.DatagramTransport | None = None
        self._outbox: socket.socket | None = None
        self._unreachable: set[int] = set()

    async def start(
        self, listens: tuple[Listen, ...], reuse_port: bool, group: WorkerGroup | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        if group is not None:  # first: siblings may hand over as soon as we share the port
            await self._join(group, loop)
        for listen in listens:
            if listen.transport == "UDP":
                owner = self if group is not None else None
                _, protocol = await loop.create_datagram_endpoint(
                    lambda listen=listen, owner=owner: _Udp(listen, self._deliver, owner),  # type: ignore[misc]
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
                self._tcp_listens.append(listen)

    async def _join(self, group: WorkerGroup, loop: asyncio.AbstractEventLoop) -> None:
        """Open this worker's inbox for responses its siblings received (WorkerGroup)."""
        inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        inbox.bind(group.address(group.index))
        inbox.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        inbox.setblocking(False)
        self._inbox, _ = await loop.create_datagram_endpoint(lambda: _HandedOver(self), sock=inbox)
        self._outbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._outbox.setblocking(False)
        self._group = group

    def hand_over(self, data: bytes, host: str, port: int) -> bool:
        """Pass a response for a sibling worker on to it; False: it is ours to handle."""
        group = self._group
        owner = response_owner(data) if group is not None else None
        if group is None or owner is None or owner == group.index or owner >= group.count:
            return False
        assert self._outbox is not None
        try:
            self._outbox.sendto(b"%b %d\n%b" % (host.encode(), port, data), group.address(owner))
        except OSError as exc:  # the sibling is gone or its inbox full: lost, as on UDP
            if owner not in self._unreachable:  # once per sibling, not once per packet
                self._unreachable.add(owner)
                log.warning("cannot hand responses to worker %d: %s", owner, exc)
        else:
            self._unreachable.discard(owner)
        return True

    def udp_protocol(self, family_host: str) -> _Udp | None:
        """The UDP listener of ``family_host``'s address family, if any."""
        listen = self.udp_listener(family_host)
        return None if listen is None else self._udp.get(listen)

    def udp_listener(self, family_host: str) -> Listen | None:
        """A UDP listener of the address family of ``family_host`` (to send from)."""
        want_v6 = ":" in family_host
        for listen in self._udp:
            if (":" in listen.host) == want_v6:
                return listen
        return None

    async def connect(self, peer: Peer) -> None:
        """Open a TCP connection to ``peer`` unless one is open, for a request we send
        over TCP (RFC 3261 §18.1.1; responses come back on it). Raises OSError when it
        cannot be opened, or when we have no TCP listener to take the peer's requests."""
        if peer.transport != "TCP" or (peer.host, peer.port) in self._connections:
            return
        if not self._tcp_listens:
            raise OSError(f"no TCP listener to reach {peer} from")
        listen = self._tcp_listens[0]
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: _Tcp(self, listen), peer.host, peer.port)

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
        for protocol in self._udp.values():
            if protocol.transport is not None:
                protocol.transport.close()
        if self._inbox is not None:
            self._inbox.close()
        if self._outbox is not None:
            self._outbox.close()
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
