"""Benchmark: parse a typical INVITE and REGISTER, read the routing data, serialize.

The same work is done with the PyPI SIP parsers ``sipmessage`` and ``sippy`` in the
same run, on the same messages; the result line compares cloudpbx to the faster one:

    RESULT parse cloudpbx=<n>/s best_peer=<name>:<n>/s ratio=<cloudpbx/best_peer>

"Routing data" is what a proxy or B2BUA reads from every message: the top Via's
branch, the From and To tags, Call-ID, CSeq number and method, and the Request-URI.
Run: ``.venv/bin/python bench/parse.py [--seconds S]``. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

INVITE = (
    b"INVITE sip:2002@demo.cloudpbx.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK.4a1c6f3e2b;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:2001@demo.cloudpbx.test>;tag=9fxced76sl\r\n'
    b"To: <sip:2002@demo.cloudpbx.test>\r\n"
    b"Call-ID: 3848276298220188511@192.0.2.10\r\n"
    b"CSeq: 20 INVITE\r\n"
    b'Contact: <sip:2001@192.0.2.10:5062;transport=udp>;+sip.instance="<urn:uuid:1>"\r\n'
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY, REFER\r\n"
    b"Supported: replaces, timer, 100rel\r\n"
    b"User-Agent: baresip v1.0.0 (x86_64/linux)\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 142\r\n"
    b"\r\n"
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
REGISTER = (
    b"REGISTER sip:demo.cloudpbx.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK.77a2d9e0;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:2001@demo.cloudpbx.test>;tag=1c8a0f7b\r\n"
    b"To: <sip:2001@demo.cloudpbx.test>\r\n"
    b"Call-ID: 9d0e3ad1b0c44b1f@192.0.2.10\r\n"
    b"CSeq: 3 REGISTER\r\n"
    b"Contact: <sip:2001@192.0.2.10:5062;transport=udp>;expires=3600\r\n"
    b'Authorization: Digest username="2001", realm="demo.cloudpbx.test", '
    b'nonce="MTcwMDAwMDAwMA.abcdef", uri="sip:demo.cloudpbx.test", '
    b'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", '
    b"qop=auth, nc=00000001\r\n"
    b"User-Agent: baresip v1.0.0 (x86_64/linux)\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
MESSAGES = (INVITE, REGISTER)
Routing = tuple[Any, ...]
Work = Callable[[bytes], tuple[Routing, bytes]]


def cloudpbx(data: bytes) -> tuple[Routing, bytes]:
    from sipedge.sip.framing import parse_datagram
    from sipedge.sip.message import Request

    message = parse_datagram(data)
    assert isinstance(message, Request)
    cseq = message.cseq
    routing = (
        message.branch,
        message.from_.tag,
        message.to.tag,
        message.call_id,
        cseq.number,
        cseq.method,
        str(message.uri),
    )
    return routing, message.to_bytes()


def sipmessage_peer(data: bytes) -> tuple[Routing, bytes]:
    from sipmessage import Message

    message = Message.parse(data)
    cseq = message.cseq
    routing = (
        message.via[0].parameters.get("branch"),
        message.from_address.parameters.get("tag"),
        message.to_address.parameters.get("tag"),
        message.call_id,
        cseq.sequence,
        cseq.method,
        str(message.uri),  # type: ignore[union-attr]
    )
    return routing, bytes(message)


def sippy_peer(data: bytes) -> tuple[Routing, bytes]:
    from sippy.SipRequest import SipRequest

    message = SipRequest(data.decode("utf-8"))
    number, method = message.getHFBody("cseq").getCSeq()
    routing = (
        message.getHFBody("via").getBranch(),
        message.getHFBody("from").getTag(),
        message.getHFBody("to").getTag(),
        str(message.getHFBody("call-id")),
        number,
        method,
        str(message.getRURI()),
    )
    return routing, str(message).encode("utf-8")


def one_round(work: Callable[[bytes], tuple[Routing, bytes]], seconds: float) -> float:
    """Messages per second over ``seconds``, alternating the messages."""
    count = 0
    gc.collect()
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            for data in MESSAGES:
                work(data)
        count += 50 * len(MESSAGES)
    return count / (time.perf_counter() - start)


def rates(contenders: dict[str, Work], seconds: float, rounds: int = 9) -> dict[str, float]:
    """The median of ``rounds`` rounds each; contenders take turns within every round,
    so a load that comes and goes on the machine falls on all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, work in contenders.items():
            samples[name].append(one_round(work, seconds / rounds))
    return {name: statistics.median(values) for name, values in samples.items()}


EXPECTED_ROUTING = {
    INVITE: (
        "z9hG4bK.4a1c6f3e2b",
        "9fxced76sl",
        None,
        "3848276298220188511@192.0.2.10",
        20,
        "INVITE",
        "sip:2002@demo.cloudpbx.test",
    ),
    REGISTER: (
        "z9hG4bK.77a2d9e0",
        "1c8a0f7b",
        None,
        "9d0e3ad1b0c44b1f@192.0.2.10",
        3,
        "REGISTER",
        "sip:demo.cloudpbx.test",
    ),
}


def check(name: str, work: Work) -> None:
    """Every contender must read the same routing data, or the race is meaningless."""
    for data, expected in EXPECTED_ROUTING.items():
        routing, wire = work(data)
        if routing != expected:
            raise SystemExit(f"{name} read {routing!r}, expected {expected!r}")
        if b"\r\n\r\n" not in wire:
            raise SystemExit(f"{name} did not serialize a message")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=9.0, help="time per contender")
    args = parser.parse_args()
    contenders: dict[str, Work] = {
        "cloudpbx": cloudpbx,
        "sipmessage": sipmessage_peer,
        "sippy": sippy_peer,
    }
    for name, work in contenders.items():
        check(name, work)
    measured = rates(contenders, args.seconds)
    for name, value in measured.items():
        print(f"{name:12} {value:>10,.0f} messages/s (parse + routing data + serialize)")
    peers = {name: value for name, value in measured.items() if name != "cloudpbx"}
    best = max(peers, key=lambda name: peers[name])
    ratio = measured["cloudpbx"] / peers[best]
    print(
        f"RESULT parse cloudpbx={measured['cloudpbx']:.0f}/s "
        f"best_peer={best}:{peers[best]:.0f}/s ratio={ratio:.2f}"
    )


if __name__ == "__main__":
    main()
