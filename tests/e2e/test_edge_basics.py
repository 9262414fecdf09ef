"""A running edge answers OPTIONS, keep-alives and REGISTER with digest, and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

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


def metric(edge: Any, name: str) -> float:
    """The sum of a metric's samples on the edge's /metrics page."""
    page = urllib.request.urlopen(f"http://127.0.0.1:{edge.metrics_port}/metrics").read()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in page.decode().splitlines()
        if line.startswith((name + " ", name + "{"))
    )


def first_attempt(edge: Any, method: str, branch: str) -> bytes:
    """A REGISTER or INVITE without credentials (SIPp's and every phone's first try)."""
    target = edge.domain if method == "REGISTER" else f"2002@{edge.domain}"
    return (
        f"{method} sip:{target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:2001@{edge.domain}>;tag=f-{branch}\r\nTo: <sip:{target}>\r\n"
        f"Call-ID: {branch}@test\r\nCSeq: 1 {method}\r\n"
        "Contact: <sip:2001@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_first_attempts_are_challenged_without_a_transaction(edge: Any) -> None:
    """RFC 3261 §8.2.7: 401/407 come from a stateless UAS; retransmissions see the same
    To tag, other requests another, and the ACK of a 407 is absorbed without an answer."""
    before = metric(edge, "sip_server_transactions_total")
    first = udp_exchange(edge.port, first_attempt(edge, "REGISTER", "z9hG4bK-sl1"))
    again = udp_exchange(edge.port, first_attempt(edge, "REGISTER", "z9hG4bK-sl1"))
    other = udp_exchange(edge.port, first_attempt(edge, "REGISTER", "z9hG4bK-sl2"))
    invite = udp_exchange(edge.port, first_attempt(edge, "INVITE", "z9hG4bK-sl3"))
    assert [first.status, again.status, other.status, invite.status] == [401, 401, 401, 407]
    assert first.to.tag is not None
    assert first.to.tag.startswith("sl")
    assert again.to.tag == first.to.tag
    assert other.to.tag != first.to.tag
    assert first.headers.get("WWW-Authenticate") is not None
    assert invite.headers.get("Proxy-Authenticate") is not None
    assert invite.top_via.received == "127.0.0.1"
    ack = (
        f"ACK sip:2002@{edge.domain} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-sl3;rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:2001@{edge.domain}>;tag=f-z9hG4bK-sl3\r\n"
        f"To: <sip:2002@{edge.domain}>;tag={invite.to.tag}\r\n"
        "Call-ID: z9hG4bK-sl3@test\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        sock.sendto(ack, ("127.0.0.1", edge.port))
        with pytest.raises(TimeoutError):
            sock.recvfrom(65535)  # never answered
    assert metric(edge, "sip_server_transactions_total") == before
    assert metric(edge, "sip_challenges_total") >= 4
    assert edge.alive()
    assert "Traceback" not in edge.log.read_text()


def worker_pids(edge: Any) -> list[int]:
    """The edge's worker processes (its children, but multiprocessing's resource tracker).

    A killed worker may still be listed as a child and be gone a moment later, before its
    command line is read: it is then no worker.
    """
    children = Path(f"/proc/{edge.process.pid}/task/{edge.process.pid}/children")
    workers = []
    for pid in (int(pid) for pid in children.read_text().split()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (ProcessLookupError, FileNotFoundError):
            continue
        if b"resource_tracker" not in cmdline:
            workers.append(pid)
    return workers


def test_a_killed_worker_is_started_again(edge_factory: Any) -> None:
    edge = edge_factory(redis=True, workers=2)
    before = worker_pids(edge)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        after = worker_pids(edge)
        if (
            len(after) == 2
            and before[0] not in after
            and "starting it again" in edge.log.read_text()
        ):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no replacement worker:\n{edge.log.read_text()[-2000:]}")
    time.sleep(1.0)  # the new worker loads its tenants and binds the port
    # From many source ports (spread over both workers by the kernel): all answered.
    for probe in range(12):  # each its own transaction: a new branch and Call-ID
        fresh = options(edge.port).replace(b"opt1", f"opt1-{probe}".encode())
        fresh = fresh.replace(b"opt-1@test", f"opt-1-{probe}@test".encode())
        assert udp_exchange(edge.port, fresh).status == 200
    edge.process.send_signal(signal.SIGTERM)
    assert edge.process.wait(timeout=15) == 0  # a deliberate stop restarts nothing
    assert edge.log.read_text().count("starting it again") == 1
