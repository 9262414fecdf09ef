"""Field by field: what the RFC 4475 / RFC 5118 messages must expose once parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipedge.sip.address import Address
from sipedge.sip.framing import parse_datagram
from sipedge.sip.headers import ContactWildcard
from sipedge.sip.message import Request, Response
from sipedge.sip.uri import AbsoluteUri, SipUri

DATA = Path(__file__).resolve().parents[2] / "data" / "sip-torture"


def request(name: str) -> Request:
    message = parse_datagram((DATA / name).read_bytes())
    assert isinstance(message, Request)
    return message


def response(name: str) -> Response:
    message = parse_datagram((DATA / name).read_bytes())
    assert isinstance(message, Response)
    return message


def contacts(message: Request | Response) -> tuple[Address, ...]:
    found = message.contacts
    assert not isinstance(found, ContactWildcard)
    return found


def sip(uri: object) -> SipUri:
    assert isinstance(uri, SipUri)
    return uri


def test_wsinv_short_tortuous_invite() -> None:
    m = request("wsinv.sip")
    assert m.method == "INVITE"
    assert sip(m.uri).params.items() == (("unknownparam", None),)
    assert m.to.tag == "1918181833n"
    assert sip(m.to.uri).user == "vivekg"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert (m.cseq.number, m.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert [str(r.uri) for r in m.routes] == [
        "sip:services.example.com;lr;unknownwith=value;unknown-no-value"
    ]
    (contact,) = contacts(m)
    assert contact.display_name == 'Quoted string ""'
    assert contact.params.items() == (
        ("newparam", "newvalue"),
        ("secondparam", None),
        ("q", "0.33"),
    )
    assert m.content_type is not None
    assert m.content_type.mime == "application/sdp"
    assert len(m.body) == 150
    assert m.body.startswith(b"v=0\r\n")


def test_intmeth_wide_range_of_valid_characters() -> None:
    m = request("intmeth.sip")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq.method == m.method
    uri = sip(m.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert (
        m.from_.params.get("fromParam''~+*_!.-%")
        == '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    )
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_esc01_escapes_decoded_exactly_once() -> None:
    m = request("esc01.sip")
    assert sip(m.uri).user == "sips:user@example.com"
    assert sip(m.uri).host == "example.net"
    assert sip(m.to.uri).user == "user"
    assert sip(m.from_.uri).user == "I have spaces"
    (contact,) = contacts(m)
    assert sip(contact.uri).user == "caller"
    assert sip(contact.uri).params.items() == (("lr", None), ("name", "value%41"))
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"


def test_escnull_keeps_nul_and_two_distinct_contacts() -> None:
    m = request("escnull.sip")
    assert sip(m.to.uri).user == "null-\x00-null"
    assert sip(m.from_.uri).user == "null-\x00-null"
    assert [sip(c.uri).user for c in contacts(m)] == ["\x00", "\x00\x00"]
    assert str(contacts(m)[1].uri) == "sip:%00%00@host5.example.com"


def test_esc02_percent_is_not_an_escape_outside_uris() -> None:
    m = request("esc02.sip")
    assert m.method == "RE%47IST%45R"
    assert m.cseq.method == "RE%47IST%45R"
    assert m.to.display_name == "%Z%45"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"
    assert [sip(c.uri).host for c in contacts(m)] == ["host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_token_display_name_touching_the_bracket() -> None:
    m = request("lwsdisp.sip")
    assert m.from_.display_name == "caller"
    assert m.from_.tag == "323"


def test_longreq_long_values() -> None:
    m = request("longreq.sip")
    assert m.to.display_name is not None
    assert "extremeextreme" in m.to.display_name
    assert sip(m.to.uri).port == 6000
    assert len(m.from_.tag or "") > 100
    assert len(m.call_id) > 100
    assert len(m.vias) == 34
    assert len(m.body) == 150


def test_dblreq_trailing_octets_are_ignored() -> None:
    m = request("dblreq.sip")
    assert m.method == "REGISTER"
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert m.body == b""
    assert b"INVITE" not in m.to_bytes()


def test_semiuri_semicolon_belongs_to_the_user() -> None:
    m = request("semiuri.sip")
    uri = sip(m.uri)
    assert uri.user == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert not uri.params
    assert m.headers.values("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_every_via() -> None:
    m = request("transports.sip")
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_body_framed_by_content_length() -> None:
    m = request("mpart01.sip")
    assert m.method == "MESSAGE"
    assert len(m.body) == 553
    assert b"\x00" in m.body
    assert m.content_type is not None
    assert m.content_type.mime == "multipart/mixed"
    assert m.content_type.params.get("boundary") == "7a9cbec02ceef655"
    assert m.top_via.wants_rport
    assert m.top_via.port == 5070


def test_unreason_utf8_reason_phrase() -> None:
    m = response("unreason.sip")
    assert m.status == 200
    assert m.reason.startswith("= 2**3 * 5**2 ")
    assert "\u043d\u043e" in m.reason


def test_noreason_empty_reason_phrase() -> None:
    m = response("noreason.sip")
    assert (m.status, m.reason) == (100, "")
    assert m.to_bytes().startswith(b"SIP/2.0 100 \r\n")


def test_contact_params_versus_uri_params() -> None:
    (header_param,) = contacts(request("cparam01.sip"))
    assert header_param.params.items() == (("unknownparam", None),)
    assert not sip(header_param.uri).params
    (uri_param,) = contacts(request("cparam02.sip"))
    assert sip(uri_param.uri).params.items() == (("unknownparam", None),)
    assert not uri_param.params


def test_regescrt_escaped_header_stays_in_the_uri() -> None:
    (contact,) = contacts(request("regescrt.sip"))
    assert sip(contact.uri).headers == (("Route", "<sip:sip.example.com>"),)
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def test_unknown_schemes_are_opaque() -> None:
    assert request("unkscm.sip").uri == AbsoluteUri("nobodyknowsthisscheme", "totallyopaquecontent")
    m = request("unksm2.sip")
    assert isinstance(m.to.uri, AbsoluteUri)
    assert m.to.uri.scheme == "isbn"


def test_inv2543_old_syntax() -> None:
    m = request("inv2543.sip")
    assert m.top_via.branch is None
    assert m.from_.tag is None
    assert m.max_forwards is None
    assert m.body.startswith(b"v=0")


@pytest.mark.parametrize(
    ("name", "host", "port"),
    [
        ("ipv6-good.sip", "[2001:db8::10]", None),
        ("port-ambiguous.sip", "[2001:db8::10:5070]", None),
        ("port-unambiguous.sip", "[2001:db8::10]", 5070),
    ],
)
def test_rfc5118_request_uri_hosts(name: str, host: str, port: int | None) -> None:
    uri = sip(request(f"rfc5118/{name}").uri)
    assert (uri.host, uri.port) == (host, port)
    assert uri.host_address == host[1:-1]


@pytest.mark.parametrize(
    ("name", "received"),
    [
        ("via-received-param-with-delim.sip", "[2001:db8::9:255]"),
        ("via-received-param-no-delim.sip", "2001:db8::9:255"),
    ],
)
def test_rfc5118_via_received(name: str, received: str) -> None:
    via = request(f"rfc5118/{name}").top_via
    assert via.host == "[2001:db8::9:1]"
    assert via.received == received


def test_rfc5118_mixed_vias() -> None:
    vias = request("rfc5118/mult-ip-in-header.sip").vias
    assert [(v.transport, v.host, v.port, v.received) for v in vias] == [
        ("UDP", "[2001:db8::9:1]", 6050, None),
        ("UDP", "192.0.2.1", None, None),
        ("TCP", "[2001:db8::9:255]", None, "192.0.2.200"),
    ]


def test_rfc5118_ipv4_mapped() -> None:
    m = request("rfc5118/ipv4-mapped-ipv6.sip")
    assert [(v.host, v.port) for v in m.vias] == [
        ("[::ffff:192.0.2.10]", 19823),
        ("[::ffff:192.0.2.2]", None),
    ]
    assert sip(contacts(m)[0].uri).host == "[::ffff:192.0.2.2]"
