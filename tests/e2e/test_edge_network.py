"""The edge on IPv6, and its keep-alive OPTIONS to phones behind NAT."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench.scripted import ScriptedPhone
from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Request, Response


def test_ipv6_listeners_answer(edge_factory: Any, port_factory: Any) -> None:
    port = port_factory()
    edge = edge_factory(
        extra_args=["--listen", f"udp:[::1]:{port}", "--listen", f"tcp:[::1]:{port}"]
    )
    options = (
        f"OPTIONS sip:[::1]:{port} SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:9;branch=z9hG4bKv6;rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@[::1]>;tag=6\r\nTo: <sip:[::1]>\r\n"
        "Call-ID: v6@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.bind(("::1", 0))
        sock.settimeout(3)
        sock.sendto(options, ("::1", port))
        answer = parse_datagram(sock.recvfrom(65535)[0])
    assert isinstance(answer, Response)
    assert answer.status == 200
    assert answer.top_via.received == "[::1]"
    with socket.create_connection(("::1", port), timeout=3) as stream:
        stream.sendall(b"\r\n\r\n")
        assert stream.recv(2) == b"\r\n"
    assert edge.alive()


def test_natted_phone_gets_keepalive_options(edge_factory: Any) -> None:
    edge = edge_factory(extra_args=["--keepalive-interval", "1"])
    phone = ScriptedPhone("2001", edge.domain, "pw-2001-test")
    try:
        # The phone writes its private address; its packets come from 127.0.0.1:port.
        ok = phone.register(edge.port, contact="<sip:2001@10.0.0.23:5060>")
        assert ok.status == 200
        ping = phone.receive()  # to the real source, not to 10.0.0.23
        assert isinstance(ping, Request)
        assert ping.method == "OPTIONS"
        assert str(ping.uri) == "sip:2001@10.0.0.23:5060"
    finally:
        phone.close()
