"""RFC 3581 at the edge: received/rport stamping and where UDP responses go."""

from __future__ import annotations

import pytest

from sipedge.nat import response_destination, stamp_received
from sipedge.sip.message import Request, make_response
from sipedge.sip.transaction import Peer


def request(via: str) -> Request:
    return Request(
        "OPTIONS",
        "sip:x@example.com",
        [
            ("Via", via),
            ("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp"),
            ("From", "<sip:a@example.com>;tag=1"),
            ("To", "<sip:x@example.com>"),
            ("Call-ID", "c1"),
            ("CSeq", "1 OPTIONS"),
        ],
    )


@pytest.mark.parametrize(
    ("via", "source", "stamped"),
    [
        # RFC 3581 §4: received even when equal to sent-by when rport was asked for.
        (
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
            Peer("UDP", "192.0.2.1", 5060),
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport=5060;received=192.0.2.1",
        ),
        # Behind NAT: the private sent-by is kept, the real source is recorded.
        (
            "SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK2;rport",
            Peer("UDP", "198.51.100.9", 40312),
            "SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK2;rport=40312;received=198.51.100.9",
        ),
        # No rport: received only when the host differs (RFC 3261 §18.2.1).
        (
            "SIP/2.0/UDP host.example.com;branch=z9hG4bK3",
            Peer("UDP", "203.0.113.5", 5060),
            "SIP/2.0/UDP host.example.com;branch=z9hG4bK3;received=203.0.113.5",
        ),
        (
            "SIP/2.0/UDP 203.0.113.5;branch=z9hG4bK4",
            Peer("UDP", "203.0.113.5", 5060),
            "SIP/2.0/UDP 203.0.113.5;branch=z9hG4bK4",
        ),
        # IPv6 sources are bracketed in received; IPv4-mapped counts as the IPv4 address.
        (
            "SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK5;rport",
            Peer("UDP", "2001:db8::1", 5070),
            "SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK5;rport=5070;received=[2001:db8::1]",
        ),
        (
            "SIP/2.0/UDP [::ffff:192.0.2.2];branch=z9hG4bK6",
            Peer("UDP", "192.0.2.2", 5060),
            "SIP/2.0/UDP [::ffff:192.0.2.2];branch=z9hG4bK6",
        ),
    ],
)
def test_stamp_received(via: str, source: Peer, stamped: str) -> None:
    message = request(via)
    stamp_received(message, source)
    assert message.headers.lines("Via") == [
        stamped,
        "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp",
    ]


def test_only_the_first_value_of_a_combined_via_line_changes() -> None:
    message = request("SIP/2.0/UDP 10.0.0.7;branch=z9hG4bK7;rport, SIP/2.0/UDP  odd.example ")
    stamp_received(message, Peer("UDP", "198.51.100.9", 4000))
    assert message.headers.lines("Via")[0] == (
        "SIP/2.0/UDP 10.0.0.7;branch=z9hG4bK7;rport=4000;received=198.51.100.9, "
        "SIP/2.0/UDP  odd.example"
    )


@pytest.mark.parametrize(
    ("via", "destination"),
    [
        (
            "SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK;rport=40312;received=198.51.100.9",
            Peer("UDP", "198.51.100.9", 40312),
        ),
        (
            "SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK;received=198.51.100.9",
            Peer("UDP", "198.51.100.9", 5062),
        ),
        ("SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK", Peer("UDP", "192.0.2.4", 5060)),
        (
            "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bK;received=[2001:db8::9:255]",
            Peer("UDP", "2001:db8::9:255", 6050),
        ),
    ],
)
def test_response_destination(via: str, destination: Peer) -> None:
    response = make_response(request(via), 200, "OK")
    assert response_destination(response, "UDP") == destination
