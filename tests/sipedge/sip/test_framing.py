"""Framing on datagrams and streams, and the limits that keep hostile input cheap."""

from __future__ import annotations

import pytest

from sipedge.sip.errors import FramingError, MessageTooLarge, ParseError
from sipedge.sip.framing import (
    Broken,
    KeepAlive,
    Rejected,
    StreamFramer,
    content_length,
    parse_datagram,
)
from sipedge.sip.message import Headers, Request
from sipedge.sip.parser import Limits, check_request

OPTIONS = (
    b"OPTIONS sip:alice@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:alice@example.com>\r\n"
    b"From: <sip:bob@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"body"
)


def with_header(line: bytes, message: bytes = OPTIONS) -> bytes:
    head, _, body = message.partition(b"\r\n\r\n")
    return head + b"\r\n" + line + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("00042", 42), ("4294967295", 4294967295)],
)
def test_content_length_values(value: str, expected: int) -> None:
    assert content_length(Headers([("Content-Length", value)])) == expected


@pytest.mark.parametrize("value", ["-1", "five", "1 2", "+3", "99999999999", "٣"])
def test_content_length_garbage_is_a_framing_error(value: str) -> None:
    with pytest.raises(FramingError):
        content_length(Headers([("l", value)]))


def test_datagram_leading_crlf_is_ignored() -> None:
    message = parse_datagram(b"\r\n\r\n" + OPTIONS)
    assert isinstance(message, Request)
    assert message.body == b"body"


def test_datagram_without_header_end_is_refused() -> None:
    with pytest.raises(FramingError):
        parse_datagram(OPTIONS.replace(b"\r\n\r\n", b"\r\n"))


def test_stream_several_messages_in_one_read() -> None:
    framer = StreamFramer()
    items = framer.feed(OPTIONS + b"\r\n\r\n" + OPTIONS + OPTIONS[:30])
    assert [type(item) for item in items] == [Request, KeepAlive, Request]
    assert framer.buffered == 30
    assert [type(item) for item in framer.feed(OPTIONS[30:])] == [Request]
    assert framer.buffered == 0


def test_stream_single_crlf_pong_is_swallowed() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    items = framer.feed(OPTIONS)
    assert [type(item) for item in items] == [Request]


def test_stream_bad_start_line_with_known_length_is_skipped() -> None:
    framer = StreamFramer()
    bad = OPTIONS.replace(b"OPTIONS sip:alice@example.com SIP/2.0", b"OPTIONS  sip:a SIP/2.0")
    items = framer.feed(bad + OPTIONS)
    assert isinstance(items[0], Rejected)
    assert items[0].error.status == 400
    assert isinstance(items[1], Request)


def test_stream_header_section_is_bounded() -> None:
    framer = StreamFramer(Limits(max_message_bytes=1024))
    items = framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 2000)
    assert len(items) == 1
    assert isinstance(items[0], Broken)
    assert isinstance(items[0].error, MessageTooLarge)
    assert framer.buffered == 0


def test_stream_body_is_bounded() -> None:
    framer = StreamFramer(Limits(max_message_bytes=1024))
    huge = OPTIONS.replace(b"Content-Length: 4", b"Content-Length: 5000")
    (item,) = framer.feed(huge)
    assert isinstance(item, Broken)
    assert item.error.status == 513


def test_message_over_the_maximum_is_refused() -> None:
    big = with_header(b"X-Pad: " + b"a" * 7000)
    assert isinstance(parse_datagram(big), Request)
    with pytest.raises(MessageTooLarge):
        parse_datagram(big, Limits(max_message_bytes=4096))
    with pytest.raises(MessageTooLarge):
        parse_datagram(with_header(b"X-Pad: " + b"a" * 70000))


def test_over_long_header_line_is_refused() -> None:
    with pytest.raises(MessageTooLarge):
        parse_datagram(with_header(b"Subject: " + b"x" * 9000))


def test_over_long_folded_header_is_refused() -> None:
    folded = b"Subject: x" + b"\r\n y" * 5000
    with pytest.raises(MessageTooLarge):
        parse_datagram(with_header(folded), Limits(max_header_lines=10**6))


def test_ten_thousand_via_values_on_one_line() -> None:
    vias = b"Via: " + b", ".join([b"SIP/2.0/UDP h;branch=z9hG4bK1"] * 10_000)
    with pytest.raises(MessageTooLarge):
        parse_datagram(with_header(vias), Limits(max_message_bytes=10**6))


def test_ten_thousand_via_lines() -> None:
    vias = b"\r\n".join([b"Via: SIP/2.0/UDP h;branch=z9hG4bK1"] * 10_000)
    with pytest.raises(MessageTooLarge):
        parse_datagram(with_header(vias), Limits(max_message_bytes=10**6))


def test_many_via_values_under_the_line_limit_are_still_bounded() -> None:
    vias = b"Via: " + b",".join([b"SIP/2.0/UDP h"] * 500)
    message = parse_datagram(with_header(vias))
    with pytest.raises(ParseError, match="too many Via"):
        _ = message.vias


def test_ten_thousand_uri_params() -> None:
    uri = b"sip:alice@example.com" + b";p" * 10_000
    message = OPTIONS.replace(b"sip:alice@example.com SIP", uri + b" SIP", 1)
    with pytest.raises(MessageTooLarge):
        parse_datagram(message, Limits(max_message_bytes=10**6))
    many = OPTIONS.replace(b"sip:alice@example.com SIP", b"sip:a@b" + b";p" * 100 + b" SIP", 1)
    with pytest.raises(ParseError, match="too many parameters"):
        parse_datagram(many)


def test_ten_thousand_header_params() -> None:
    message = parse_datagram(with_header(b"Contact: <sip:a@b>" + b";p" * 500))
    assert isinstance(message, Request)
    with pytest.raises(ParseError, match="too many parameters"):
        check_request(message)
