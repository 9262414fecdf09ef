"""SDP codec (RFC 4566, 3264, 3605, 5118 §4.6): RFC vectors, exact bytes, properties."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.sdp import (
    Attribute,
    Bandwidth,
    Connection,
    Direction,
    Fmtp,
    Media,
    MediaAnchor,
    Origin,
    Rtcp,
    RtpMap,
    SdpError,
    SdpMisuse,
    SessionDescription,
    Timing,
    anchor_media,
    parse_sdp,
    serialize_sdp,
)

TORTURE = Path(__file__).resolve().parents[1] / "data" / "sip-torture"


def torture_body(name: str) -> bytes:
    """The body of a torture message: everything after the first empty line (bytes)."""
    return (TORTURE / name).read_bytes().split(b"\r\n\r\n", 1)[1]


def sdp(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def ip4(address: str) -> Connection:
    return Connection("IN", "IP4", address)


def ip6(address: str) -> Connection:
    return Connection("IN", "IP6", address)


# --- RFC 4475 / RFC 5118 torture bodies ----------------------------------------------

# file → (origin, session name, session c=, [(media, port, proto, formats, c=, rtpmaps)])
TORTURE_EXPECTED = {
    "wsinv.sip": (
        Origin("mhandley", "29739", 7272939, "IN", "IP4", "192.0.2.3"),
        "-",
        ip4("192.0.2.4"),
        [
            ("audio", 49217, "RTP/AVP", ("0", "12"), ip4("192.0.2.4"), ()),
            ("video", 3227, "RTP/AVP", ("31",), ip4("192.0.2.4"), (RtpMap(31, "LPC"),)),
        ],
    ),
    "rfc5118/ipv6-in-sdp.sip": (
        Origin("assistant", "971731711378798081", 0, "IN", "IP6", "2001:db8::20"),
        "Live video feed for today's meeting",
        ip6("2001:db8::20"),
        [
            ("audio", 6000, "RTP/AVP", ("2",), ip6("2001:db8::20"), (RtpMap(2, "G726-32", 8000),)),
            (
                "video",
                6024,
                "RTP/AVP",
                ("107",),
                ip6("2001:db8::20"),
                (RtpMap(107, "H263-1998", 90000),),
            ),
        ],
    ),
    "rfc5118/mult-ip-in-sdp.sip": (
        Origin("bob", "280744730", 28977631, "IN", "IP4", "host.example.com"),
        "",
        None,
        [
            ("audio", 22334, "RTP/AVP", ("0",), ip4("192.0.2.1"), ()),
            (
                "video",
                6024,
                "RTP/AVP",
                ("107",),
                ip6("2001:db8::1"),
                (RtpMap(107, "H263-1998", 90000),),
            ),
        ],
    ),
    "rfc5118/ipv4-mapped-ipv6.sip": (
        Origin("assistant", "971731711378798081", 0, "IN", "IP6", "::ffff:192.0.2.2"),
        "Call me soon, please!",
        ip6("::ffff:192.0.2.2"),
        [
            (
                "audio",
                6000,
                "RTP/AVP",
                ("2",),
                ip6("::ffff:192.0.2.2"),
                (RtpMap(2, "G726-32", 8000),),
            ),
            (
                "video",
                6024,
                "RTP/AVP",
                ("107",),
                ip6("::ffff:192.0.2.2"),
                (RtpMap(107, "H263-1998", 90000),),
            ),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(TORTURE_EXPECTED))
def test_torture_body_fields(name: str) -> None:
    origin, session_name, session_c, media = TORTURE_EXPECTED[name]
    parsed = parse_sdp(torture_body(name))
    assert parsed.origin == origin
    assert parsed.session_name == session_name
    assert parsed.connection == session_c
    got = [
        (m.media_type, m.port, m.proto, m.formats, parsed.connection_of(m), m.rtpmaps())
        for m in parsed.media
    ]
    assert got == media


@pytest.mark.parametrize("name", sorted(TORTURE_EXPECTED))
def test_torture_body_is_already_canonical(name: str) -> None:
    body = torture_body(name)
    assert serialize_sdp(parse_sdp(body)) == body


def test_torture_timings_and_static_payload_types() -> None:
    wsinv = parse_sdp(torture_body("wsinv.sip"))
    assert wsinv.timings == (Timing(0, 0),)
    assert wsinv.media[0].rtpmap(0) == RtpMap(0, "PCMU", 8000)
    assert wsinv.media[0].rtpmap(12) == RtpMap(12, "QCELP", 8000)
    assert wsinv.media[1].rtpmap(31) == RtpMap(31, "LPC")  # the a=rtpmap wins over RFC 3551
    ipv6 = parse_sdp(torture_body("rfc5118/ipv6-in-sdp.sip"))
    assert ipv6.timings == (Timing(3338481189, 3370017201),)


# --- a phone's offer, and the same offer anchored at a relay -------------------------

PHONE_OFFER = sdp(
    "v=0",
    "o=alice 2890844526 2890844526 IN IP4 192.168.1.20",
    "s=-",
    "c=IN IP4 192.168.1.20",
    "t=0 0",
    "m=audio 49170 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendrecv",
)

RELAYED_OFFER = sdp(
    "v=0",
    "o=alice 2890844526 2890844527 IN IP4 192.168.1.20",
    "s=-",
    "c=IN IP4 203.0.113.7",
    "t=0 0",
    "m=audio 30000 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendrecv",
    "a=rtcp:30001",
)


def test_phone_offer_reads_like_the_spec() -> None:
    offer = parse_sdp(PHONE_OFFER)
    (audio,) = offer.media
    assert offer.origin.session_version == 2890844526
    assert offer.connection_of(audio) == ip4("192.168.1.20")
    assert audio.payload_types == (0, 8, 101)
    assert audio.rtpmaps() == (
        RtpMap(0, "PCMU", 8000),
        RtpMap(8, "PCMA", 8000),
        RtpMap(101, "telephone-event", 8000),
    )
    assert audio.fmtp(101) == Fmtp(101, "0-16")
    assert audio.fmtp(0) is None
    assert audio.ptime_ms == 20
    assert audio.rtcp is None
    assert offer.direction_of(audio) is Direction.SENDRECV


def test_phone_offer_anchored_at_relay_exact_bytes() -> None:
    offer = parse_sdp(PHONE_OFFER)
    relayed = anchor_media(offer, [MediaAnchor("203.0.113.7", 30000, 30001)])
    assert serialize_sdp(relayed.with_bumped_version()) == RELAYED_OFFER
    assert serialize_sdp(offer) == PHONE_OFFER  # the offer itself is untouched


def test_relay_rewrite_by_hand_matches_anchor_media() -> None:
    offer = parse_sdp(PHONE_OFFER)
    audio = offer.media[0].with_port(30000).with_rtcp(Rtcp(30001))
    by_hand = offer.with_connection("203.0.113.7").with_media(0, audio).with_bumped_version()
    assert serialize_sdp(by_hand) == RELAYED_OFFER


def test_anchor_rewrites_existing_rtcp_in_place_and_ipv6_relay() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP4 192.168.1.20",
        "s=-",
        "c=IN IP4 192.168.1.20",
        "t=0 0",
        "m=audio 49170 RTP/AVP 0",
        "a=rtcp:49171 IN IP4 192.168.1.20",
        "a=sendrecv",
    )
    relayed = anchor_media(parse_sdp(offer), [MediaAnchor("2001:DB8::7", 30000, 30001)])
    assert serialize_sdp(relayed) == sdp(
        "v=0",
        "o=- 1 1 IN IP4 192.168.1.20",
        "s=-",
        "c=IN IP6 2001:db8::7",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0",
        "a=rtcp:30001",
        "a=sendrecv",
    )


def test_anchor_without_rtcp_port_drops_the_peers_rtcp() -> None:
    offer = parse_sdp(
        sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 0")
        + b"c=IN IP4 10.0.0.1\r\na=rtcp:4001\r\n"
    )
    relayed = anchor_media(offer, [MediaAnchor("198.51.100.1", 20000)])
    assert relayed.connection is None  # every media has its own c=: none added
    assert relayed.media[0].connections == (ip4("198.51.100.1"),)
    assert relayed.media[0].rtcp is None


def test_anchor_leaves_unanchored_media_where_it_was() -> None:
    offer = parse_sdp(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
            "m=video 0 RTP/AVP 31",
            "m=text 5000 RTP/AVP 98",
            "c=IN IP4 10.0.0.9",
        )
    )
    anchors = [MediaAnchor("198.51.100.1", 20000), None, MediaAnchor("2001:db8::1", 20002)]
    relayed = anchor_media(offer, anchors)
    assert relayed.connection == ip4("198.51.100.1")
    assert [relayed.connection_of(m) for m in relayed.media] == [
        ip4("198.51.100.1"),
        ip4("10.0.0.1"),  # pinned at media level: it relied on the old session c=
        ip6("2001:db8::1"),
    ]
    assert [m.port for m in relayed.media] == [20000, 0, 20002]
    assert anchor_media(offer, [None, None, None]) == offer


def test_anchor_needs_one_entry_per_media() -> None:
    with pytest.raises(SdpMisuse):
        anchor_media(parse_sdp(PHONE_OFFER), [])


# --- typed attribute readers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0 PCMU/8000", RtpMap(0, "PCMU", 8000)),
        ("96 opus/48000/2", RtpMap(96, "opus", 48000, 2)),
        ("101 telephone-event/8000", RtpMap(101, "telephone-event", 8000)),
        ("31 LPC", RtpMap(31, "LPC")),
        ("127  H264/90000 ", RtpMap(127, "H264", 90000)),
    ],
)
def test_rtpmap(value: str, expected: RtpMap) -> None:
    assert RtpMap.parse(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "0", "128 PCMU/8000", "x PCMU/8000", "0 PCMU/8000/1/2", "0 PCMU/", "0 PC MU/8000"],
)
def test_rtpmap_malformed(value: str) -> None:
    with pytest.raises(SdpError, match="malformed SDP a=rtpmap line"):
        RtpMap.parse(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("53020", Rtcp(53020)),
        ("53020 IN IP4 126.16.64.4", Rtcp(53020, ip4("126.16.64.4"))),
        ("53020 IN IP6 2001:db8::4", Rtcp(53020, ip6("2001:db8::4"))),
        ("0", Rtcp(0)),
    ],
)
def test_rtcp(value: str, expected: Rtcp) -> None:
    assert Rtcp.parse(value) == expected
    assert Rtcp.parse(expected.to_attribute().value or "") == expected


@pytest.mark.parametrize("value", ["", "65536", "port", "53020 IN IP4", "53020 IN IP4 a b"])
def test_rtcp_malformed(value: str) -> None:
    with pytest.raises(SdpError, match="malformed SDP a=rtcp line"):
        Rtcp.parse(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("101 0-16", Fmtp(101, "0-16")),
        ("18 annexb=no", Fmtp(18, "annexb=no")),
        ("96", Fmtp(96, "")),
    ],
)
def test_fmtp(value: str, expected: Fmtp) -> None:
    assert Fmtp.parse(value) == expected


@pytest.mark.parametrize(
    ("session_direction", "media_direction", "effective"),
    [
        (None, None, Direction.SENDRECV),
        ("sendonly", None, Direction.SENDONLY),
        ("sendonly", "recvonly", Direction.RECVONLY),
        (None, "inactive", Direction.INACTIVE),
        ("inactive", "sendrecv", Direction.SENDRECV),
    ],
)
def test_media_direction_overrides_session(
    session_direction: str | None, media_direction: str | None, effective: Direction
) -> None:
    lines = ["v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0"]
    lines += [f"a={session_direction}"] if session_direction else []
    lines += ["m=audio 4000 RTP/AVP 0"]
    lines += [f"a={media_direction}"] if media_direction else []
    parsed = parse_sdp(sdp(*lines))
    assert parsed.direction_of(parsed.media[0]) is effective


@pytest.mark.parametrize(
    ("direction", "reversed_direction"),
    [
        (Direction.SENDRECV, Direction.SENDRECV),
        (Direction.SENDONLY, Direction.RECVONLY),
        (Direction.RECVONLY, Direction.SENDONLY),
        (Direction.INACTIVE, Direction.INACTIVE),
    ],
)
def test_direction_seen_from_the_peer(direction: Direction, reversed_direction: Direction) -> None:
    assert direction.reversed() is reversed_direction


def test_set_direction_keeps_attribute_place() -> None:
    media = parse_sdp(PHONE_OFFER).media[0].with_direction(Direction.SENDONLY)
    assert [a.name for a in media.attributes][-2:] == ["ptime", "sendonly"]
    held = parse_sdp(PHONE_OFFER).with_direction(Direction.INACTIVE)
    assert held.attributes == (Attribute("inactive"),)
    assert held.direction_of(held.media[0]) is Direction.SENDRECV  # media-level wins


# --- addresses: RFC 5118 §4.6, written without brackets ------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("192.0.2.1", ip4("192.0.2.1")),
        ("2001:DB8::1", ip6("2001:db8::1")),
        ("[2001:db8::1]", ip6("2001:db8::1")),
        ("::ffff:192.0.2.2", ip6("::ffff:192.0.2.2")),
        (ipaddress.ip_address("198.51.100.1"), ip4("198.51.100.1")),
        (ipaddress.ip_address("2001:db8::2"), ip6("2001:db8::2")),
    ],
)
def test_connection_written_from_address(
    address: str | ipaddress.IPv4Address | ipaddress.IPv6Address, expected: Connection
) -> None:
    offer = parse_sdp(PHONE_OFFER)
    assert offer.with_connection(address).connection == expected
    assert offer.media[0].with_connection(address).connections == (expected,)
    origin = offer.with_origin_address(address).origin
    assert (origin.addrtype, origin.address) == (expected.addrtype, expected.address)


@pytest.mark.parametrize("address", ["pbx.example.com", "", "fe80::1%eth0", "[::1"])
def test_connection_needs_an_ip_address(address: str) -> None:
    with pytest.raises(SdpMisuse):
        parse_sdp(PHONE_OFFER).with_connection(address)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("c=IN IP4 192.0.2.4", ip4("192.0.2.4")),
        ("c=IN IP6 [2001:db8::1]", ip6("2001:db8::1")),  # a peer's brackets are removed
        ("c=IN IP4 224.2.1.1/127/3", Connection("IN", "IP4", "224.2.1.1", "/127/3")),
        ("c=IN IP6 ff15::101/3", Connection("IN", "IP6", "ff15::101", "/3")),
        ("c=IN IP4 host.example.com", ip4("host.example.com")),
    ],
)
def test_connection_line(line: str, expected: Connection) -> None:
    parsed = parse_sdp(sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", line, "t=0 0"))
    assert parsed.connection == expected


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_out_of_range_is_our_misuse(port: int) -> None:
    media = parse_sdp(PHONE_OFFER).media[0]
    with pytest.raises(SdpMisuse):
        media.with_port(port)
    with pytest.raises(SdpMisuse):
        media.with_rtcp(Rtcp(port))


# --- faithful parsing: order, unknown lines, line endings ------------------------------

FULL = sdp(
    "v=0",
    "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
    "s=SDP Seminar",
    "i=A Seminar on the session description protocol",
    "u=http://www.example.com/seminars/sdp.pdf",
    "e=j.doe@example.com (Jane Doe)",
    "p=+1 617 555-6011",
    "c=IN IP4 224.2.17.12/127",
    "b=CT:128",
    "t=2873397496 2873404696",
    "r=604800 3600 0 90000",
    "z=2882844526 -1h 2898848070 0",
    "k=prompt",
    "a=recvonly",
    "a=X-vendor:one",
    "x=unknown session line",
    "m=audio 49170/2 RTP/AVP 0",
    "i=voice",
    "c=IN IP4 224.2.17.12/127",
    "b=AS:64",
    "k=clear:secret",
    "a=zzz",
    "a=aaa:1",
    "y=unknown media line",
    "m=application 9 TCP/BFCP *",
    "a=floorctrl:c-s",
)


def test_every_line_type_is_kept_in_rfc_order() -> None:
    parsed = parse_sdp(FULL)
    assert parsed.information == "A Seminar on the session description protocol"
    assert parsed.emails == ("j.doe@example.com (Jane Doe)",)
    assert parsed.phones == ("+1 617 555-6011",)
    assert parsed.bandwidths == (Bandwidth("CT", 128),)
    assert parsed.timings == (Timing(2873397496, 2873404696, ("604800 3600 0 90000",)),)
    assert parsed.zone_adjustments == "2882844526 -1h 2898848070 0"
    assert parsed.key == "prompt"
    assert parsed.unknown_lines == ("x=unknown session line",)
    audio, bfcp = parsed.media
    assert (audio.port, audio.port_count, audio.key) == (49170, 2, "clear:secret")
    assert audio.attributes == (Attribute("zzz"), Attribute("aaa", "1"))
    assert audio.unknown_lines == ("y=unknown media line",)
    assert (bfcp.proto, bfcp.formats, bfcp.payload_types) == ("TCP/BFCP", ("*",), ())
    assert bfcp.values("floorctrl") == ("c-s",)
    assert serialize_sdp(parsed) == FULL


def test_out_of_order_lines_are_written_in_rfc_order() -> None:
    messy = b"v=0\no=- 1 1 IN IP4 10.0.0.1\nt=0 0\na=sendrecv \ns=-\nc=IN  IP4 10.0.0.1\n"
    assert serialize_sdp(parse_sdp(messy)) == sdp(
        "v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0", "a=sendrecv"
    )


def test_bare_lf_and_str_input_parse_like_crlf_bytes() -> None:
    crlf = parse_sdp(PHONE_OFFER)
    assert parse_sdp(PHONE_OFFER.replace(b"\r\n", b"\n")) == crlf
    assert parse_sdp(PHONE_OFFER.decode()) == crlf
    assert parse_sdp(PHONE_OFFER + b"\r\n") == crlf


def test_non_utf8_bytes_survive_a_round_trip() -> None:
    body = sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0").replace(b"s=-", b"s=\xff\xfe")
    assert serialize_sdp(parse_sdp(body)) == body


def test_serialize_refuses_a_value_that_would_break_its_line() -> None:
    injected = SessionDescription(
        origin=Origin("-", "1", 1, "IN", "IP4", "10.0.0.1"), session_name="x\r\na=evil"
    )
    with pytest.raises(SdpMisuse):
        serialize_sdp(injected)


# --- malformed SDP: 400 with a reason naming the line ----------------------------------

HEAD = ("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "SDP does not begin with a v= line"),
        (sdp(*HEAD[1:]), "SDP does not begin with a v= line"),
        (sdp("v=1", *HEAD[1:]), "malformed SDP v= line"),
        (sdp("v=0", "s=-", "t=0 0"), "missing SDP o= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "t=0 0"), "missing SDP s= line"),
        (sdp("v=0", "o=- 1 IN IP4 10.0.0.1", "s=-"), "malformed SDP o= line"),
        (sdp("v=0", "o=- 1 x IN IP4 10.0.0.1", "s=-"), "malformed SDP o= line"),
        (sdp(*HEAD, "o=- 1 1 IN IP4 10.0.0.1"), "repeated SDP o= line"),
        (sdp(*HEAD, "v=0"), "misplaced SDP v= line in session"),
        (sdp(*HEAD, "c=IN IP4"), "malformed SDP c= line"),
        (sdp(*HEAD, "c=IN IP4 224.2.1.1/x"), "malformed SDP c= line"),
        (sdp(*HEAD, "c=IN IP4 10.0.0.1", "c=IN IP4 10.0.0.2"), "repeated SDP c= line"),
        (sdp(*HEAD, "b=AS"), "malformed SDP b= line"),
        (sdp(*HEAD, "b=AS:fast"), "malformed SDP b= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0"), "malformed SDP t= line"),
        (sdp("v=0", "o=- 1 1 IN IP4 a", "s=-", "r=7d 1h 0"), "SDP r= line before any t= line"),
        (sdp(*HEAD, "r=7d"), "malformed SDP r= line"),
        (sdp(*HEAD, "z=2882844526"), "malformed SDP z= line"),
        (sdp(*HEAD, "m=audio 65536 RTP/AVP 0"), "malformed SDP m= line"),
        (sdp(*HEAD, "m=audio -1 RTP/AVP 0"), "malformed SDP m= line"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 128"), "malformed SDP m= line"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP PCMU"), "malformed SDP m= line"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP"), "malformed SDP m= line"),
        (sdp(*HEAD, "m=audio 4000/0 RTP/AVP 0"), "malformed SDP m= line"),
        (sdp(*HEAD, "m=audio 4000 RTP//AVP 0"), "malformed SDP m= line"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "s=-"), "misplaced SDP s= line in media"),
        (sdp(*HEAD, "m=audio 4000 RTP/AVP 0", "i=a", "i=b"), "repeated SDP i= line"),
        (sdp(*HEAD, "a="), "malformed SDP a= line"),
        (sdp(*HEAD, "a=two words"), "malformed SDP a= line"),
        (sdp(*HEAD, "a=rtpmap:0"), "malformed SDP a=rtpmap line"),
        (sdp(*HEAD, "a=fmtp:200 x"), "malformed SDP a=fmtp line"),
        (sdp(*HEAD, "a=rtcp:70000"), "malformed SDP a=rtcp line"),
        (sdp(*HEAD, "a=ptime:twenty"), "malformed SDP a=ptime line"),
        (sdp(*HEAD, "junk"), "malformed SDP line 5"),
        (sdp(*HEAD, "A=upper"), "malformed SDP line 5"),
        (sdp(*HEAD, " a=indented"), "malformed SDP line 5"),
        (sdp(*HEAD, "i=nul\0inside"), "malformed SDP i= line"),
        (sdp(*HEAD, "i=bare\rcr"), "malformed SDP i= line"),
    ],
)
def test_malformed_sdp_is_400(body: bytes, reason: str) -> None:
    with pytest.raises(SdpError) as caught:
        parse_sdp(body)
    assert caught.value.status == 400
    assert caught.value.reason == f"Bad Request: {reason}"


def test_str_with_lone_surrogate_is_400() -> None:
    with pytest.raises(SdpError):
        parse_sdp("v=0\r\ns=\ud800\r\n")


def test_peer_fault_and_our_misuse_are_different_types() -> None:
    assert not issubclass(SdpError, SdpMisuse)
    assert not issubclass(SdpMisuse, SdpError)
    error = SdpError("Bad Request: two\r\nlines")
    assert (error.status, error.reason) == (400, "Bad Request: two  lines")


# --- hostile input: linear time, bounded numbers ----------------------------------------


def test_hundred_thousand_lines_parse_in_linear_time() -> None:
    attributes = sdp(*HEAD, "m=audio 4000 RTP/AVP 0") + b"a=x-attr:1\r\n" * 100_000
    assert len(parse_sdp(attributes).media[0].attributes) == 100_000
    media = sdp(*HEAD) + b"m=audio 0 RTP/AVP 0\r\nc=IN IP4 10.0.0.1\r\n" * 50_000
    assert len(parse_sdp(media).media) == 50_000
    formats = sdp(*HEAD) + b"m=audio 4000 RTP/AVP" + b" 0" * 100_000 + b"\r\n"
    assert len(parse_sdp(formats).media[0].formats) == 100_000


@pytest.mark.parametrize(
    "line",
    [
        b"m=audio " + b"9" * 100_000 + b" RTP/AVP 0",
        b"m=audio 4000 RTP/AVP " + b"1" * 100_000,
        b"t=" + b"1" * 100_000 + b" 0",
        b"b=AS:" + b"1" * 21,
        b"a=rtpmap:0 PCMU/" + b"8" * 100_000,
        b"a=ptime:" + b"2" * 100_000,
    ],
)
def test_huge_numbers_are_refused(line: bytes) -> None:
    with pytest.raises(SdpError) as caught:
        parse_sdp(sdp(*HEAD[:3]) + line + b"\r\n")
    assert caught.value.status == 400


# --- properties --------------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz{|}~"
TYPED_ATTRIBUTES = {"rtpmap", "fmtp", "rtcp", "ptime"}

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=8)
line_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=12)
payload_types = st.integers(0, 127)
ports = st.integers(0, 65535)
addresses = st.one_of(
    st.ip_addresses(v=4).map(lambda ip: ("IP4", str(ip))),
    st.ip_addresses(v=6).map(lambda ip: ("IP6", str(ip))),
)
connections = st.builds(
    lambda kind, suffix: Connection("IN", kind[0], kind[1], suffix),
    addresses,
    st.sampled_from(["", "/127", "/127/3"]),
)
rtpmaps = st.one_of(
    st.builds(RtpMap, payload_types, tokens),
    st.builds(RtpMap, payload_types, tokens, st.integers(1, 10**6), st.none() | st.integers(1, 8)),
)
fmtps = st.builds(Fmtp, payload_types, st.text(TOKEN_CHARS, max_size=10))
rtcps = st.builds(Rtcp, ports, st.none() | connections)
attributes = st.one_of(
    st.builds(
        Attribute, tokens.filter(lambda n: n.lower() not in TYPED_ATTRIBUTES), st.none() | line_text
    ),
    rtpmaps.map(RtpMap.to_attribute),
    fmtps.map(Fmtp.to_attribute),
    rtcps.map(Rtcp.to_attribute),
    st.integers(1, 1000).map(lambda ms: Attribute("ptime", str(ms))),
    st.sampled_from(Direction).map(lambda d: Attribute(d.value)),
)
unknown_lines = st.builds(
    lambda letter, text: f"{letter}={text}", st.sampled_from("dfghjlnqwxy"), line_text
)
bandwidths = st.builds(
    Bandwidth, st.sampled_from(["AS", "CT", "TIAS", "RS", "RR", "X-YZ"]), st.integers(0, 10**9)
)


@st.composite
def media_descriptions(draw: st.DrawFn) -> Media:
    proto = draw(
        st.sampled_from(["RTP/AVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVPF", "udptl", "TCP/MSRP"])
    )
    formats = (
        st.lists(payload_types.map(str), min_size=1, max_size=5)
        if "RTP/" in proto
        else st.lists(tokens, min_size=1, max_size=3)
    )
    return Media(
        media_type=draw(st.sampled_from(["audio", "video", "image", "application", "text"])),
        port=draw(ports),
        port_count=draw(st.none() | st.integers(1, 4)),
        proto=proto,
        formats=tuple(draw(formats)),
        information=draw(st.none() | line_text),
        connections=tuple(draw(st.lists(connections, max_size=2))),
        bandwidths=tuple(draw(st.lists(bandwidths, max_size=2))),
        key=draw(st.none() | line_text),
        attributes=tuple(draw(st.lists(attributes, max_size=6))),
        unknown_lines=tuple(draw(st.lists(unknown_lines, max_size=2))),
    )


@st.composite
def session_descriptions(draw: st.DrawFn) -> SessionDescription:
    addrtype, address = draw(addresses)
    origin = Origin(
        username=draw(tokens),
        session_id=str(draw(st.integers(0, 2**63))),
        session_version=draw(st.integers(0, 2**63)),
        nettype="IN",
        addrtype=addrtype,
        address=address,
    )
    timings = st.builds(
        Timing,
        st.integers(0, 2**40),
        st.integers(0, 2**40),
        st.lists(st.sampled_from(["604800 3600 0 90000", "7d 1h 0 25h"]), max_size=2).map(tuple),
    )
    return SessionDescription(
        origin=origin,
        session_name=draw(line_text),
        information=draw(st.none() | line_text),
        uri=draw(st.none() | line_text),
        emails=tuple(draw(st.lists(line_text, max_size=2))),
        phones=tuple(draw(st.lists(line_text, max_size=2))),
        connection=draw(st.none() | connections),
        bandwidths=tuple(draw(st.lists(bandwidths, max_size=2))),
        timings=tuple(draw(st.lists(timings, max_size=2))),
        zone_adjustments=draw(st.none() | st.just("2882844526 -1h 2898848070 0")),
        key=draw(st.none() | line_text),
        attributes=tuple(draw(st.lists(attributes, max_size=4))),
        media=tuple(draw(st.lists(media_descriptions(), max_size=3))),
        unknown_lines=tuple(draw(st.lists(unknown_lines, max_size=2))),
    )


@settings(max_examples=200, deadline=None)
@given(session_descriptions())
def test_generated_sdp_round_trips(description: SessionDescription) -> None:
    wire = serialize_sdp(description)
    assert parse_sdp(wire) == description
    assert parse_sdp(wire.decode("utf-8", "surrogateescape")) == description


@settings(max_examples=200, deadline=None)
@given(rtpmaps, fmtps, rtcps)
def test_typed_attributes_round_trip(rtpmap: RtpMap, fmtp: Fmtp, rtcp: Rtcp) -> None:
    media = Media(
        media_type="audio",
        port=4000,
        proto="RTP/AVP",
        formats=(str(rtpmap.payload_type),),
        attributes=(rtpmap.to_attribute(), fmtp.to_attribute(), rtcp.to_attribute()),
    )
    assert media.rtpmap(rtpmap.payload_type) == rtpmap
    assert media.fmtp(fmtp.payload_type) == fmtp
    assert media.rtcp == rtcp


def assert_parse_or_400(data: bytes) -> None:
    """Either an SdpError with 400, or a model that is a fixed point of the codec."""
    try:
        parsed = parse_sdp(data)
    except SdpError as exc:
        status = exc.status
    else:
        assert parse_sdp(serialize_sdp(parsed)) == parsed
        return
    assert status == 400


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_sdp_error(data: bytes) -> None:
    assert_parse_or_400(data)


@settings(max_examples=200, deadline=None)
@given(session_descriptions(), st.data())
def test_mutated_sdp_parses_or_raises_sdp_error(
    description: SessionDescription, data: st.DataObject
) -> None:
    wire = bytearray(serialize_sdp(description))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(wire)))
        junk = data.draw(st.binary(max_size=3) | st.sampled_from([b"\n", b" ", b"=", b"/", b":"]))
        cut = data.draw(st.integers(0, 3))
        wire[at : at + cut] = junk
    assert_parse_or_400(bytes(wire))
