"""Typed header fields (RFC 3261 §20, RFC 3581, RFC 6665) and the Headers container."""

from __future__ import annotations

import pytest

from sipedge.sip.errors import ParseError, ProtocolMisuse
from sipedge.sip.headers import (
    ContactWildcard,
    CSeq,
    Via,
    canonical_name,
    parse_call_id,
    parse_contacts,
    parse_content_type,
    parse_cseq,
    parse_event,
    parse_route_set,
    parse_subscription_state,
    parse_tokens,
    parse_via,
    parse_vias,
)
from sipedge.sip.message import Headers, Request, Response


@pytest.mark.parametrize(
    ("value", "transport", "host", "port", "params"),
    [
        (
            "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
            "UDP",
            "pc33.atlanta.com",
            None,
            [("branch", "z9hG4bK776asdhds")],
        ),
        (
            "SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74b76;received=192.0.2.101",
            "TCP",
            "client.atlanta.example.com",
            5060,
            [("branch", "z9hG4bK74b76"), ("received", "192.0.2.101")],
        ),
        (
            "SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKx",
            "UDP",
            "192.0.2.1",
            5060,
            [("rport", None), ("branch", "z9hG4bKx")],
        ),
        ("sip/2.0/udp H.Example.COM", "UDP", "h.example.com", None, []),
        (
            "SIP / 2.0 / TLS   [2001:db8::1] : 5061 ; maddr=224.2.0.1 ; ttl=16",
            "TLS",
            "[2001:db8::1]",
            5061,
            [("maddr", "224.2.0.1"), ("ttl", "16")],
        ),
        (
            "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKasudf",
            "WSS",
            "df7jal23ls0d.invalid",
            None,
            [("branch", "z9hG4bKasudf")],
        ),
    ],
)
def test_via(
    value: str, transport: str, host: str, port: int | None, params: list[tuple[str, str]]
) -> None:
    via = parse_via(value)
    assert (via.transport, via.host, via.port, list(via.params)) == (transport, host, port, params)
    assert parse_via(str(via)) == via


def test_via_rport_and_received() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=40000;received=198.51.100.7")
    assert (via.branch, via.rport, via.received, via.wants_rport) == (
        "z9hG4bK1",
        40000,
        "198.51.100.7",
        True,
    )
    assert via.sent_by == "10.0.0.1:5060"
    bare = parse_via("SIP/2.0/UDP 10.0.0.1;rport")
    assert (bare.rport, bare.wants_rport, bare.maddr) == (None, True, None)


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0 host",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host;rport=x",
        "SIP/2.0/UDP host;ttl=256",
        "SIP/2.0/UDP ho st",
        "SIP/2.0/UDP host;;",
    ],
)
def test_malformed_via(value: str) -> None:
    with pytest.raises(ParseError, match="Via") as caught:
        parse_via(value)
    assert caught.value.status == 400


def test_via_lists_split_on_commas() -> None:
    vias = parse_vias(["SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b", "SIP/2.0/UDP c"])
    assert [v.host for v in vias] == ["a", "b", "c"]
    with pytest.raises(ParseError, match="empty value"):
        parse_vias(["SIP/2.0/UDP a,,SIP/2.0/UDP b"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4711 INVITE", CSeq(4711, "INVITE")),
        ("  0 ACK ", CSeq(0, "ACK")),
        ("0009\tBYE", CSeq(9, "BYE")),
    ],
)
def test_cseq(value: str, expected: CSeq) -> None:
    assert parse_cseq(value) == expected


@pytest.mark.parametrize("value", ["INVITE", "1", "-1 INVITE", "1 IN VITE", "4294967296 BYE"])
def test_malformed_cseq(value: str) -> None:
    with pytest.raises(ParseError, match="CSeq"):
        parse_cseq(value)


def test_contacts() -> None:
    contacts = parse_contacts(
        [
            '"Mr. Watson" <sip:watson@worcester.bell-telephone.com>;q=0.7;'
            "expires=3600, <mailto:watson@bell-telephone.com>;q=0.1"
        ]
    )
    assert isinstance(contacts, tuple)
    assert [c.params.get("q") for c in contacts] == ["0.7", "0.1"]
    assert contacts[0].display_name == "Mr. Watson"
    assert parse_contacts(["*"]) == ContactWildcard()
    assert str(ContactWildcard()) == "*"


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (["*, <sip:a@b>"], "mixed"),
        (["<sip:a@b>;q=1.5"], "q-value"),
        (["<sip:a@b>;q=0.1234"], "q-value"),
        (["<sip:a@b>;expires=soon"], "Contact expires"),
        (["<sip:a@b>;expires=99999999999"], "Contact expires"),
    ],
)
def test_malformed_contacts(values: list[str], reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_contacts(values)


def test_route_set_requires_name_addr() -> None:
    routes = parse_route_set(["<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"], "Route")
    assert [str(r.uri) for r in routes] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    with pytest.raises(ParseError, match="name-addr"):
        parse_route_set(["sip:p1.example.com;lr"], "Record-Route")


def test_content_type() -> None:
    content_type = parse_content_type('Multipart/Signed ; boundary=abc;protocol="x/y"')
    assert content_type.mime == "multipart/signed"
    assert content_type.params.get("protocol") == '"x/y"'
    with pytest.raises(ParseError, match="Content-Type"):
        parse_content_type("application")


def test_option_tags() -> None:
    assert parse_tokens(["timer, 100rel", "replaces"], "Supported") == (
        "timer",
        "100rel",
        "replaces",
    )
    assert parse_tokens([""], "Supported") == ()
    with pytest.raises(ParseError, match="Require"):
        parse_tokens(["timer 100rel"], "Require")


def test_event_and_subscription_state() -> None:
    event = parse_event("Presence;id=7")
    assert (event.package, event.params.get("id")) == ("presence", "7")
    state = parse_subscription_state("active;expires=3600")
    assert (state.state, state.expires_s) == ("active", 3600)
    terminated = parse_subscription_state("terminated;reason=timeout;retry-after=30")
    assert terminated.params.get("reason") == "timeout"
    with pytest.raises(ParseError, match="Subscription-State"):
        parse_subscription_state("active;expires=forever")
    with pytest.raises(ParseError, match="Event"):
        parse_event("pres ence")


@pytest.mark.parametrize("value", ["f81d4fae-7dec-11d0-a765-00a0c91e6bf6@foo.bar.com", "a"])
def test_call_id(value: str) -> None:
    assert parse_call_id(f" {value} ") == value


@pytest.mark.parametrize("value", ["", "a b", "a@b@c", "@b"])
def test_malformed_call_id(value: str) -> None:
    with pytest.raises(ParseError, match="Call-ID"):
        parse_call_id(value)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("v", "Via"),
        ("V", "Via"),
        ("i", "Call-ID"),
        ("CALL-ID", "Call-ID"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("k", "Supported"),
        ("o", "Event"),
        ("www-authenticate", "WWW-Authenticate"),
        ("X-Custom", "X-Custom"),
    ],
)
def test_canonical_names(spelling: str, canonical: str) -> None:
    assert canonical_name(spelling) == canonical


def test_headers_container_keeps_order_and_spelling() -> None:
    headers = Headers([("v", "SIP/2.0/UDP a"), ("X-Thing", "1"), ("Via", "SIP/2.0/UDP b")])
    assert list(headers) == [("Via", "SIP/2.0/UDP a"), ("X-Thing", "1"), ("Via", "SIP/2.0/UDP b")]
    headers.prepend("Via", "SIP/2.0/UDP top")
    assert headers.lines("v") == ["SIP/2.0/UDP top", "SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert headers.pop_first("Via") == "SIP/2.0/UDP top"
    headers.set("x-thing", "2")
    assert headers.get("X-THING") == "2"
    headers.remove("Via")
    assert "Via" not in headers
    assert len(headers) == 1


def test_typed_cache_follows_changes() -> None:
    request = Request("OPTIONS", "sip:a@b", [("Via", "SIP/2.0/UDP a;branch=z9hG4bK1")])
    assert request.branch == "z9hG4bK1"
    request.headers.prepend("Via", "SIP/2.0/UDP p;branch=z9hG4bK2")
    assert request.branch == "z9hG4bK2"
    assert [v.host for v in request.vias] == ["p", "a"]
    assert isinstance(request.top_via, Via)


@pytest.mark.parametrize(
    ("name", "value"),
    [("Subject", "hi\r\nVia: SIP/2.0/UDP evil"), ("Subject", "a\nb"), ("Bad Name", "x"), ("", "x")],
)
def test_header_injection_is_refused(name: str, value: str) -> None:
    with pytest.raises(ProtocolMisuse):
        Headers().add(name, value)


def test_missing_and_repeated_single_headers() -> None:
    response = Response(200, "OK", [("CSeq", "1 INVITE"), ("CSeq", "2 INVITE")])
    with pytest.raises(ParseError, match="more than one CSeq"):
        _ = response.cseq
    with pytest.raises(ParseError, match="missing Call-ID"):
        _ = response.call_id
    with pytest.raises(ParseError, match="missing Via"):
        _ = response.vias
