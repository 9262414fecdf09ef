"""Building messages: responses from requests (RFC 3261 §8.2.6) and canonical bytes."""

from __future__ import annotations

from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Request, Response, make_response

INVITE = (
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds, SIP/2.0/UDP p.atlanta.com\r\n"
    b"Via: SIP/2.0/UDP origin.atlanta.com;branch=z9hG4bK1\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.com>\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Timestamp: 54\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite() -> Request:
    message = parse_datagram(INVITE)
    assert isinstance(message, Request)
    return message


def test_final_response_copies_the_dialog_fields_and_adds_the_to_tag() -> None:
    response = make_response(invite(), 486, "Busy Here", to_tag="a6c85cf")
    assert response.to_bytes() == (
        b"SIP/2.0 486 Busy Here\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds, SIP/2.0/UDP p.atlanta.com\r\n"
        b"Via: SIP/2.0/UDP origin.atlanta.com;branch=z9hG4bK1\r\n"
        b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
        b'To: "Bob" <sip:bob@biloxi.com>;tag=a6c85cf\r\n'
        b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_trying_copies_timestamp_and_adds_no_tag() -> None:
    response = make_response(invite(), 100, "Trying", to_tag="ignored")
    assert response.headers.get("Timestamp") == "54"
    assert response.headers.get("To") == "Bob <sip:bob@biloxi.com>"


def test_an_existing_to_tag_is_kept() -> None:
    request = invite()
    request.headers.set("To", "<sip:bob@biloxi.com>;tag=mine")
    assert make_response(request, 200, "OK", to_tag="other").to.tag == "mine"


def test_request_uri_text_is_kept_as_received() -> None:
    message = parse_datagram(INVITE.replace(b"sip:bob@biloxi.com SIP", b"sip:b%6Fb@biloxi.com SIP"))
    assert isinstance(message, Request)
    assert message.uri_text == "sip:b%6Fb@biloxi.com"
    assert str(message.uri) == "sip:bob@biloxi.com"
    message.uri = "sip:carol@chicago.com"
    assert message.start_line() == "INVITE sip:carol@chicago.com SIP/2.0"


def test_built_response_round_trips() -> None:
    response = make_response(invite(), 200, "OK", to_tag="x")
    again = parse_datagram(response.to_bytes())
    assert isinstance(again, Response)
    assert (again.status, again.to.tag, again.cseq.number) == (200, "x", 314159)
