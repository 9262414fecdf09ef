"""SIP, SIPS, TEL and other URIs (RFC 3261 §19.1, §25.1; RFC 3966; RFC 5118)."""

from __future__ import annotations

import pytest

from sipedge.sip.address import Address, parse_address
from sipedge.sip.errors import ParseError
from sipedge.sip.grammar import Params
from sipedge.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:alice@atlanta.com", SipUri("atlanta.com", "alice")),
        ("SIP:alice@AtLanta.COM", SipUri("atlanta.com", "alice")),
        ("sips:bob@biloxi.com:5061", SipUri("biloxi.com", "bob", port=5061, scheme="sips")),
        (
            "sip:alice:secretword@atlanta.com;transport=tcp",
            SipUri("atlanta.com", "alice", "secretword", params=Params([("transport", "tcp")])),
        ),
        (
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
            SipUri("gateway.com", "+1-212-555-1212", "1234", params=Params([("user", "phone")])),
        ),
        ("sip:192.0.2.4", SipUri("192.0.2.4")),
        (
            "sip:[2001:db8::10]:5070;lr",
            SipUri("[2001:db8::10]", port=5070, params=Params([("lr", None)])),
        ),
        (
            "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
            SipUri(
                "atlanta.com",
                params=Params([("method", "REGISTER")]),
                headers=(("to", "alice@atlanta.com"),),
            ),
        ),
        ("sip:alice;day=tuesday@atlanta.com", SipUri("atlanta.com", "alice;day=tuesday")),
        ("sip:%61lice@atlanta.com", SipUri("atlanta.com", "alice")),
        (
            "sip:a@b;maddr=239.255.255.1;ttl=15",
            SipUri("b", "a", params=Params([("maddr", "239.255.255.1"), ("ttl", "15")])),
        ),
        ("tel:+1-201-555-0123", TelUri("+1-201-555-0123")),
        (
            "tel:7042;phone-context=example.com",
            TelUri("7042", Params([("phone-context", "example.com")])),
        ),
        ("mailto:someone@example.com", AbsoluteUri("mailto", "someone@example.com")),
        ("urn:service:sos", AbsoluteUri("urn", "service:sos")),
    ],
)
def test_parse_uri(text: str, expected: object) -> None:
    assert parse_uri(text) == expected
    assert parse_uri(str(parse_uri(text))) == expected


@pytest.mark.parametrize(
    ("uri", "wire"),
    [
        (
            SipUri("example.com", "sips:user@example.com"),
            "sip:sips%3Auser%40example.com@example.com",
        ),
        (SipUri("h", "a b"), "sip:a%20b@h"),
        (SipUri("h", "\x00"), "sip:%00@h"),
        (SipUri("h", "user;par=v"), "sip:user;par=v@h"),
        (SipUri("h", params=Params([("name", "value%41")])), "sip:h;name=value%2541"),
        (SipUri("h", headers=(("Route", "<sip:x>"),)), "sip:h?Route=%3Csip:x%3E"),
        (TelUri("+1", Params([("ext", "a`b")])), "tel:+1;ext=a%60b"),
    ],
)
def test_escaping_on_output(uri: SipUri | TelUri, wire: str) -> None:
    assert str(uri) == wire
    assert parse_uri(wire) == uri


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@host",
        "sip:user@",
        "sip:user@host:99999",
        "sip:user@host:port",
        "sip:2001:db8::10",
        "sip:user@host;a b",
        "sip:user@host;p=%zz",
        "sip:us%2er@host%",
        "sip:user@ho st",
        "sip:user@[2001:db8::1",
        "sip:user@host?noequals",
        "tel:",
        "tel:+1 555",
        "1sip:user@host",
        "nocolon",
        "x:",
        "x:<opaque>",
    ],
)
def test_malformed_uris_are_400(text: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_uri(text, "Request-URI")
    assert caught.value.status == 400
    assert "Request-URI" in caught.value.reason


def test_uri_properties() -> None:
    uri = parse_uri("sips:alice@[2001:db8::1];transport=TLS")
    assert isinstance(uri, SipUri)
    assert uri.host_address == "2001:db8::1"
    assert uri.effective_port == 5061
    assert uri.transport == "tls"
    assert uri.aor == "sips:alice@[2001:db8::1]"


@pytest.mark.parametrize(
    ("text", "display", "uri", "params"),
    [
        ('"Bob" <sips:bob@biloxi.com> ;tag=a48s', "Bob", "sips:bob@biloxi.com", [("tag", "a48s")]),
        (
            "Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8",
            "Anonymous",
            "sip:c8oqz84zk7z@privacy.org",
            [("tag", "hyh8")],
        ),
        (
            "sip:+12125551212@server.phone2net.com;tag=887s",
            None,
            "sip:+12125551212@server.phone2net.com",
            [("tag", "887s")],
        ),
        (
            "The Operator <sip:operator@cs.columbia.edu>",
            "The Operator",
            "sip:operator@cs.columbia.edu",
            [],
        ),
        ('"" <sip:a@b>', "", "sip:a@b", []),
        ('"\\"quoted\\" \\\\ back" <sip:a@b>', '"quoted" \\ back', "sip:a@b", []),
        ("<sip:a@b;lr>;expires=60;q=0.5", None, "sip:a@b;lr", [("expires", "60"), ("q", "0.5")]),
        ("<tel:+15555550100>", None, "tel:+15555550100", []),
        (
            '<sip:a@b>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
            None,
            "sip:a@b",
            [("+sip.instance", '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"')],
        ),
    ],
)
def test_addresses(text: str, display: str | None, uri: str, params: list[tuple[str, str]]) -> None:
    address = parse_address(text, "From")
    assert address.display_name == display
    assert str(address.uri) == uri
    assert list(address.params) == params
    assert parse_address(str(address), "From") == address


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty From"),
        ('"unterminated <sip:a@b>', "unterminated quoted string"),
        ('"Bob" sip:a@b', "display name without <URI>"),
        ("Bob, Jr. <sip:a@b>", "must be quoted"),
        ("<sip:a@b", "missing '>'"),
        ("< sip:a@b>", "whitespace inside <>"),
        ("<sip:a@b> junk", "junk after '>'"),
        ("sip:a@b?x=y", "must be in <>"),
        ("sip:a@b c", "whitespace in URI"),
        ("<sip:a@b>;=x", "malformed parameter"),
        ("<sip:a@b>;tag=a b", "malformed value"),
    ],
)
def test_malformed_addresses(text: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason) as caught:
        parse_address(text, "From")
    assert caught.value.status == 400


def test_with_tag_replaces_or_adds() -> None:
    address = parse_address("<sip:a@b>;x=1", "To")
    assert str(address.with_tag("t1")) == "<sip:a@b>;x=1;tag=t1"
    assert address.with_tag("t1").with_tag("t2").tag == "t2"
    assert isinstance(address, Address)
