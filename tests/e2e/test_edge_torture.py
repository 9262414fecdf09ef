"""Every RFC 4475/5118 torture message sent to a running edge, over UDP and TCP.

The edge must give the answer our sanity stage promises (test_torture.py's table:
400, 505, 416, 420, 501...), process the valid ones normally, drop what the RFC says
to drop, and stay up with flat memory after 10,000 replays.
"""

from __future__ import annotations

import re
import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from sipedge.sip.errors import ParseError
from sipedge.sip.framing import Broken, StreamFramer, parse_datagram
from sipedge.sip.message import Request, Response
from sipedge.sip.parser import HeadError, check_request
from sipedge.sip.transaction.keys import server_key_of

DATA = Path(__file__).resolve().parents[1] / "data" / "sip-torture"
FILES = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*.sip"))
SUPPORTED = frozenset({"timer", "replaces", "outbound", "path"})


def expected(data: bytes) -> tuple[str, int | None]:
    """("status", n): that exact answer; ("accepted", None): any non-refusal; ("none", None)."""
    try:
        message = parse_datagram(data)
    except HeadError as exc:
        return ("status", exc.status) if exc.is_request else ("none", None)
    except ParseError:
        return "none", None
    if isinstance(message, Response):
        return "none", None
    if message.method == "ACK":
        return "none", None
    try:
        check_request(message, SUPPORTED)
    except ParseError as exc:
        return "status", exc.status
    return "accepted", None


def answer_ports() -> set[int]:
    """The sent-by ports answers go to (RFC 3261 §18.2.2: no rport, so not our port)."""
    ports = {5060}
    for name in FILES:
        try:
            via = parse_datagram((DATA / name).read_bytes()).top_via
        except ParseError:
            continue
        if not via.wants_rport:
            ports.add(via.port or 5060)
    return ports


class EdgePool:
    """Edges for the replays: several torture messages reuse one branch and sent-by
    (z9hG4bKkdjuw), which makes them retransmissions of each other for as long as the
    first one's transaction lives, so each goes to an edge that has not seen its key."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._edges: list[tuple[Any, set[object]]] = []

    def edge_for(self, data: bytes) -> Any:
        try:
            message = parse_datagram(data)
            key: object = server_key_of(message) if isinstance(message, Request) else data
        except ParseError:
            key = data
        for edge, seen in self._edges:
            if key not in seen:
                seen.add(key)
                return edge
        edge = self._factory()
        self._edges.append((edge, {key}))
        return edge

    def all(self) -> list[Any]:
        return [edge for edge, _ in self._edges]


@pytest.fixture(scope="module")
def udp_edges(module_edge_factory: Any) -> EdgePool:
    return EdgePool(module_edge_factory)


@pytest.fixture
def listeners() -> Any:
    """Sockets on every port an answer may be sent to."""
    ports = answer_ports()
    sockets: dict[int, socket.socket] = {}
    try:
        for port in sorted(ports):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets[port] = sock
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                pytest.fail(f"UDP port {port} is busy ({exc}): stop what holds it and re-run")
        yield sockets
    finally:
        for sock in sockets.values():
            sock.close()


def call_id_of(data: bytes) -> str | None:
    """The Call-ID as written, read leniently (the message may be malformed)."""
    match = re.search(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", data, re.M | re.I)
    return match.group(1).decode("utf-8", "replace") if match else None


ANY = "*"


def collect(
    sockets: list[socket.socket], wait_s: float, call_id: str | None = ANY
) -> list[Response]:
    """Answers arriving within ``wait_s``; only those of ``call_id`` when one is given
    (one edge serves the whole module, and retransmitted answers to earlier messages
    keep arriving)."""
    answers: list[Response] = []
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(sockets, [], [], left)
        if not ready:
            break
        for sock in ready:
            data, _ = sock.recvfrom(65535)
            message = parse_datagram(data)
            assert isinstance(message, Response)
            if call_id == ANY or message.headers.get("Call-ID") == call_id:
                answers.append(message)
        if answers:
            wait_s = 0.2
            deadline = min(deadline, time.monotonic() + wait_s)
    return answers


@pytest.mark.parametrize("name", FILES)
def test_udp(udp_edges: EdgePool, listeners: dict[int, socket.socket], name: str) -> None:
    data = (DATA / name).read_bytes()
    edge = udp_edges.edge_for(data)
    sender = listeners[5060]
    sender.sendto(data, ("127.0.0.1", edge.port))
    kind, status = expected(data)
    answers = collect(list(listeners.values()), 1.0 if kind == "none" else 3.0, call_id_of(data))
    if kind == "none":
        assert answers == []
    else:
        assert answers, f"no answer to {name}"
        final = answers[-1]
        if kind == "status":
            assert final.status == status, final.reason
        else:
            assert final.status not in (400, 505), final.reason
    assert edge.alive()


@pytest.mark.parametrize("name", FILES)
def test_tcp(module_edge_tcp: Any, name: str) -> None:
    edge = module_edge_tcp
    data = (DATA / name).read_bytes()
    kind, status = expected(data)
    framed = StreamFramer().feed(data)
    closes = any(isinstance(item, Broken) for item in framed)
    with socket.create_connection(("127.0.0.1", edge.port), timeout=3) as sock:
        sock.sendall(data)
        received = b""
        sock.settimeout(1.5 if kind == "none" or not framed else 3.0)
        try:
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65535)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pass
    if not framed:  # incomplete over a stream (clerr, baddn): the edge keeps waiting
        assert received == b""
    elif received:
        answer = parse_datagram(received)
        assert isinstance(answer, Response)
        if kind == "status":
            assert answer.status == status
        else:
            assert kind == "accepted" or closes
            assert answer.status not in (400, 505)
    else:
        assert kind == "none" or closes
    assert edge.alive()


def test_ten_thousand_replays_keep_memory_flat(
    module_edge: Any, listeners: dict[int, socket.socket]
) -> None:
    edge = module_edge
    messages = [(DATA / name).read_bytes() for name in FILES]
    sender = listeners[5060]

    def replay(count: int) -> None:
        for index in range(count):
            sender.sendto(messages[index % len(messages)], ("127.0.0.1", edge.port))
            if index % 50 == 49:
                collect(list(listeners.values()), 0.01)  # keep our receive buffers drained

    replay(2_000)
    collect(list(listeners.values()), 0.5)
    warm_kib = edge.rss_kib()
    replay(10_000)
    collect(list(listeners.values()), 0.5)
    assert edge.alive()
    growth_kib = edge.rss_kib() - warm_kib
    assert growth_kib < 4096, f"RSS grew by {growth_kib} KiB over 10,000 replays"
