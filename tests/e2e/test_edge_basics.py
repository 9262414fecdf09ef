"""A running edge answers OPTIONS, keep-alives and REGISTER with digest, and stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request
from typing import Any

from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Response

PASSWORD_2001 = "pw-2001-test"


def udp_exchange(port: int, data: bytes, timeout_s: float = 2.0) -> Response:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout_s)
        sock.sendto(data, ("127.0.0.1", port))
        reply, _ = sock.recvfrom(65535)
    message = parse_datagram(reply)
    assert isinstance(message, Response)
    return message


def options(port: int, transport: str = "UDP") -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:9;branch=z9hG4bK-opt1;rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\n"
        f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: opt-1@test\r\nCSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_options_over_udp(edge: Any) -> None:
    response = udp_exchange(edge.port, options(edge.port))
    assert (response.status, response.reason) == (200, "OK")
    assert "REGISTER" in (response.headers.get("Allow") or "")
    assert response.top_via.rport is not None
    assert response.top_via.received == "127.0.0.1"


def test_options_and_keepalive_over_tcp(edge: Any) -> None:
    with socket.create_connection(("127.0.0.1", edge.port), timeout=2) as sock:
        sock.sendall(b"\r\n\r\n")
        assert sock.recv(2) == b"\r\n"  # RFC 5626 pong
        sock.sendall(options(edge.port, "TCP"))
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
    response = parse_datagram(data)
    assert isinstance(response, Response)
    assert response.status == 200


def sipsak(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sipsak", *args], capture_output=True, text=True, timeout=20, check=False
    )


def test_sipsak_registers_with_digest(edge: Any) -> None:
    uri = f"sip:2001@127.0.0.1:{edge.port}"
    result = sipsak(
        "-U", "-s", uri, "-u", "2001", "-a", PASSWORD_2001, "--expires=120", "-i", "-vv"
    )
    assert "authorizing" in result.stdout  # it met our 401 challenge
    assert "All usrloc tests completed successful" in result.stdout, result.stdout[-2000:]
    assert result.returncode == 0
    wrong = sipsak("-U", "-s", uri, "-u", "2001", "-a", "not-the-password", "--expires=120", "-i")
    assert wrong.returncode != 0
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{edge.metrics_port}/metrics").read()
    assert b"sip_register_accepted_total" in metrics
    assert b'sip_auth_failures_total{tenant="' + edge.tenant.encode() in metrics


def test_sigterm_stops_gracefully(edge: Any) -> None:
    edge.process.send_signal(signal.SIGTERM)
    assert edge.process.wait(timeout=15) == 0
    assert "draining" in edge.log.read_text()


def test_sha256_challenges_when_configured(edge_factory: Any) -> None:
    edge = edge_factory(extra_args=["--digest-algorithms", "SHA-256,MD5"])
    register = (
        f"REGISTER sip:{edge.domain} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-r1;rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:2001@{edge.domain}>;tag=r1\r\nTo: <sip:2001@{edge.domain}>\r\n"
        "Call-ID: reg-sha@test\r\nCSeq: 1 REGISTER\r\nContact: <sip:2001@127.0.0.1:9>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    challenge = udp_exchange(edge.port, register)
    assert challenge.status == 401
    algorithms = [
        value.split("algorithm=")[1].split(",")[0]
        for value in challenge.headers.lines("WWW-Authenticate")
    ]
    assert algorithms == ["SHA-256", "MD5"]
