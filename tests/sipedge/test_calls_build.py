"""The messages the B2BUA writes (sipedge.calls.build), as exact wire bytes.

RFC 3261 §12.2.1.1 (a request within a dialog: remote target, route set, tags, no
Contact on ACK/BYE), §9.1 (CANCEL: the INVITE's top Via only), §8.2.6 (a relayed
response: our To tag, our Contact where a dialog is made, end-to-end fields copied).
"""

from __future__ import annotations

import pytest

from sipedge.calls.build import (
    Identity,
    cancel_for,
    in_dialog_request,
    relayed_response,
    unavailable,
)
from sipedge.dialogs import Leg
from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Request, Response

ME = Identity(
    via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKedge1;rport",
    contact="<sip:acme@192.0.2.1:5060;transport=udp>",
    user_agent="cloudpbx-test",
)
LEG = Leg(
    call_id="b-1@192.0.2.1",
    local_tag="edge-b",
    remote_tag="callee",
    local_uri="sip:2001@pbx.example.com",
    remote_uri="sip:2002@pbx.example.com",
    remote_target="sip:2002@198.51.100.7:5062",
    route_set=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"),
    local_cseq=1,
    remote_cseq=0,
    transport="UDP",
    host="198.51.100.7",
    port=5062,
)
A_INVITE = (
    b"INVITE sip:2002@pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:2001@pbx.example.com>;tag=caller\r\n"
    b"To: <sip:2002@pbx.example.com>\r\n"
    b"Call-ID: a-1@192.0.2.10\r\n"
    b"CSeq: 2 INVITE\r\n"
    b"Contact: <sip:2001@192.0.2.10:5060>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def parsed(data: bytes) -> Request | Response:
    return parse_datagram(data)


def test_bye_within_the_dialog() -> None:
    assert in_dialog_request("BYE", LEG, 2, ME).to_bytes() == (
        b"BYE sip:2002@198.51.100.7:5062 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKedge1;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:2001@pbx.example.com>;tag=edge-b\r\n"
        b"To: <sip:2002@pbx.example.com>;tag=callee\r\n"
        b"Call-ID: b-1@192.0.2.1\r\n"
        b"CSeq: 2 BYE\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("method", "has_contact"), [("ACK", False), ("BYE", False), ("INVITE", True), ("UPDATE", True)]
)
def test_contact_only_on_requests_that_refresh_the_target(method: str, has_contact: bool) -> None:
    request = in_dialog_request(method, LEG, 3, ME)
    assert request.headers.lines("Contact") == ([ME.contact] if has_contact else [])


def test_cancel_copies_the_top_via_only() -> None:
    invite = in_dialog_request("INVITE", LEG, 1, ME)
    invite.headers.add("Via", "SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKbelow")
    cancel = cancel_for(invite)
    assert cancel.headers.lines("Via") == [ME.via]
    assert cancel.cseq.number == 1
    assert cancel.cseq.method == "CANCEL"
    assert cancel.headers.lines("Route") == list(LEG.route_set)


@pytest.mark.parametrize(
    ("status", "reason", "has_contact"),
    [(180, "Ringing", True), (200, "OK", True), (486, "Busy Here", False)],
)
def test_relayed_response(status: int, reason: str, has_contact: bool) -> None:
    a_invite = parsed(A_INVITE)
    assert isinstance(a_invite, Request)
    b_response = parsed(
        f"SIP/2.0 {status} {reason}\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKedge1\r\n"
        "From: <sip:2001@pbx.example.com>;tag=edge-b\r\n"
        "To: <sip:2002@pbx.example.com>;tag=callee\r\n"
        "Call-ID: b-1@192.0.2.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:2002@198.51.100.7:5062>\r\n"
        "Supported: timer\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    assert isinstance(b_response, Response)
    relayed = relayed_response(a_invite, b_response, "edge-a", ME.contact)
    assert (relayed.status, relayed.reason) == (status, reason)
    assert relayed.call_id == "a-1@192.0.2.10"
    assert relayed.to.tag == "edge-a"
    assert relayed.headers.lines("Contact") == ([ME.contact] if has_contact else [])
    assert relayed.headers.lines("Supported") == ["timer"]


@pytest.mark.parametrize(("status", "copied"), [(180, True), (200, True), (486, False)])
def test_a_dialog_making_answer_keeps_the_invites_record_route(status: int, copied: bool) -> None:
    """RFC 3261 §12.1.1: the proxies the INVITE came through (a provider's) stay in the
    dialog's path, in order; a failure makes no dialog."""
    a_invite = parsed(
        A_INVITE.replace(
            b"Max-Forwards: 70\r\n",
            b"Max-Forwards: 70\r\nRecord-Route: <sip:192.0.2.50;lr;ftag=x>\r\n"
            b"Record-Route: <sip:192.0.2.51;lr>\r\n",
        )
    )
    assert isinstance(a_invite, Request)
    b_response = parsed(
        f"SIP/2.0 {status} Whatever\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKedge1\r\n"
        "From: <sip:2001@pbx.example.com>;tag=edge-b\r\nTo: <sip:2002@pbx.example.com>;tag=c\r\n"
        "Call-ID: b-1@192.0.2.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert isinstance(b_response, Response)
    relayed = relayed_response(a_invite, b_response, "edge-a", ME.contact)
    expected = ["<sip:192.0.2.50;lr;ftag=x>", "<sip:192.0.2.51;lr>"] if copied else []
    assert relayed.headers.lines("Record-Route") == expected


def test_unavailable_names_the_relays_fault_in_a_warning() -> None:
    """RFC 3261 §20.43: warn-code 399, our host, the text as a quoted-string."""
    a_invite = parsed(A_INVITE)
    assert isinstance(a_invite, Request)
    response = unavailable(a_invite, "edge-a", "192.0.2.1", 'offer refused: "no ports"')
    assert (response.status, response.reason) == (503, "Service Unavailable")
    assert response.to.tag == "edge-a"
    assert response.headers.lines("Warning") == [
        '399 192.0.2.1 "media relay: offer refused: \\"no ports\\""'
    ]
